"""
What a run writes besides its checkpoints: train.py's JSON-lines log (log_file) and its wandb run. The wandb
run logs every record at step=iter_num and its id is kept in the checkpoint, so that --init_from=resume
continues the same run (wandb's resume='allow'); WANDB_MODE=offline is honoured as wandb does.
"""
import json


def json_log(path, fresh):
    """log_json(**record): appends one JSON line per call to `path` (train.py's log_file), or does nothing if
        path is '' (no log_file, or not the master process). `fresh` (a run from scratch) empties the file
        first; a resumed run appends."""
    if not path:
        return lambda **record: None
    if fresh:
        open(path, 'w').close()
    def log_json(**record):
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')
    return log_json


def wandb_start(project, name, config, run_id=None):
    """The wandb run: a new one, or (run_id: the checkpoint's) the same run continued. Returns the run."""
    import wandb
    if run_id:
        return wandb.init(project=project, name=name, config=config, id=run_id, resume='allow')
    return wandb.init(project=project, name=name, config=config)
