"""The end of every stage, written once and right on any number of processes: the trained model gathered into one
plain copy, judged once, held against the stage's floors, then written as the final folder (and pushed).

    finish(trainer, run, "sft", judge, "train longer (--max_steps) or from another --seed", script_args)

`judge(model)` runs on the main process only, on the plain copy (unsharded, LoRA merged): it prints its table and
returns (results for eval_results.json, measured shares, their floors). The folder holds exactly the weights judged.
"""

from .checkpoints import final_folder
from .checks import BelowFloor, shortfalls
from .distributed import gathered_model, on_main, saves_plain
from .evaluate import save_results
from .hub import save_and_push

LABELS = {"sft": "SFT", "reward": "reward"}  # in the floor's error line; the RL stages by their upper-case names


def finish(trainer, run, stage: str, judge, fix: str, *arg_objects) -> None:
    """Judge, check and save the stage's result; `judge` None: save without judging. Every process must call it.

    A result below a floor raises BelowFloor on every process before anything is written (`fix`: what to try).
    """
    model = gathered_model(trainer)
    verdict = on_main(_judge, judge, model) if judge is not None else None
    results, problems = verdict or (None, None)
    if problems:
        raise BelowFloor(
            f"the {LABELS.get(stage, stage.upper())} result is below its floor: {'; '.join(problems)}. Not saved as "
            f"the final folder (the checkpoints in {run.checkpoints_dir} stay): {fix}"
        )
    with final_folder(trainer, run) as folder, saves_plain(trainer, model):
        if results is not None and trainer.accelerator.is_main_process:
            save_results(results, f"{folder}/eval_results.json")
        save_and_push(trainer, stage, *arg_objects)


def _judge(judge, model):
    results, measured, floors = judge(model)
    return results, shortfalls(measured, floors)
