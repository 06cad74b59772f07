"""The registry of fine-tuning tasks: every built-in GLUE, SQuAD and tagging task, and any a user registers.

    from electra_jax.finetune import tasks
    tasks.register(MyTask("boolq", ...))   # a Task subclass (electra_jax.finetune.task.Task)
    tasks.get_task("boolq")

`configs/finetune.py:TASK` accepts every registered name.
"""

from __future__ import annotations

from electra_jax.finetune import glue, squad, tagging
from electra_jax.finetune.task import Task

TASKS: dict[str, Task] = {task.name: task for task in (*glue.TASKS, *squad.TASKS, *tagging.TASKS)}


def register(task: Task, replace: bool = False) -> Task:
    """Adds `task` under task.name; refuses to shadow an existing name unless `replace`."""
    if not isinstance(task, Task):
        raise TypeError(f"{task!r} is not an electra_jax.finetune.task.Task")
    if task.name in TASKS and not replace and TASKS[task.name] is not task:
        raise ValueError(f"a fine-tuning task named {task.name!r} is already registered; pick another name")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown fine-tuning task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
