# GPT-2 (124M) on FineWeb-Edu sample-10BT with AdamW, the baseline of config/train_gpt2_fineweb_alsals.py and
# _muon.py: llm.c's 124M recipe (scripts/run_gpt2_124M.sh, there on FineWeb 10B; llm.c's dev/data/fineweb.py
# also prepares FineWeb-Edu): 524,288 tokens a step, 18,865 steps (~9.9B tokens, one pass), lr 6e-4 with 700
# warmup steps and a cosine decay to 0, weight decay 0.1, val loss and HellaSwag every 250 steps. val.bin is
# the first 100M tokens, llm.c's val shard, so the val loss compares with an llm.c run on the same data
# Prepare first: python data/fineweb_edu/prepare.py && python data/hellaswag/prepare.py
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb_adamw.py

wandb_log = False
wandb_project = 'fineweb-edu'
wandb_run_name = 'gpt2-124M-fineweb-adamw'
out_dir = 'out-fineweb'
dataset = 'fineweb_edu'

# 16 sequences x 1024 tokens x 32 micro-batches (4 per GPU on 8 GPUs) = 524,288 tokens a step
batch_size = 16
block_size = 1024
gradient_accumulation_steps = 32

max_iters = 18865
lr_decay_iters = 18865
warmup_iters = 700
learning_rate = 6e-4
min_lr = 0.0 # llm.c's -q 0.0: the cosine decays to zero
weight_decay = 0.1

eval_interval = 250 # val loss and HellaSwag every 250 steps, as llm.c
eval_iters = 80 # 80 x 16 x 1024 = 1.3M val tokens a rank (llm.c: 20 steps of 64 x 1024)
log_interval = 10
# 10,042 items: llm.c's and modded-nanogpt's scoring rule
hellaswag_file = 'data/hellaswag/hellaswag_val.jsonl'
