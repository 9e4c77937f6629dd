# GPT-2 (124M) on FineWeb-Edu sample-10BT with ALSALS: config/train_gpt2_fineweb_adamw.py's batch, length,
# data and evals (the llm.c 124M recipe), with config/train_gpt2_alsals.py's line search in place of AdamW's
# lr and schedule (which the ladder does not support at this batch: see that config). Prepare first:
# python data/fineweb_edu/prepare.py && python data/hellaswag/prepare.py
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb_alsals.py
exec(open('config/train_gpt2_alsals.py').read())
exec(open('config/train_gpt2_fineweb_adamw.py').read())

wandb_run_name = 'gpt2-124M-fineweb-alsals'
out_dir = 'out-fineweb-alsals'
optimizer = 'alsals'
