# GPT-2 (124M) with ALSALS on FineWeb-Edu instead of OpenWebText: the settings of config/train_gpt2_alsals.py, only
# the data and the names differ. Prepare the data first: python data/fineweb_edu/prepare.py (subset sample-10BT,
# ~10B tokens: the 300B tokens of max_iters are ~30 passes over it; --subset sample-100BT repeats it less)
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb_alsals.py
exec(open('config/train_gpt2_alsals.py').read())

dataset = 'fineweb_edu'
wandb_project = 'fineweb-edu'
wandb_run_name = 'gpt2-124M-fineweb-alsals'
