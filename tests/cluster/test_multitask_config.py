"""A multi-task run's input: several --env, a teacher per task; each refusal one line, nothing written."""

import pytest
import yaml

from qdistill.cluster.cli import main
from qdistill.learners import checkpoint
from tests.support.teachers import untrained_teachers

TASKS = {"CartPole-v1": ((4,), 2), "Acrobot-v1": ((6,), 3)}


@pytest.fixture
def teachers(tmp_path):
    return untrained_teachers(tmp_path, TASKS)


def _refused(capsys, tmp_path, args, message):
    out = tmp_path / "run"
    assert main(["run", *args, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"qdistill: error: {message}\n"
    assert not out.exists()


def _both(teachers):
    return ["--env", "CartPole-v1", "--env", "Acrobot-v1",
            "--teacher", f"CartPole-v1={teachers['CartPole-v1']}", "--teacher", f"Acrobot-v1={teachers['Acrobot-v1']}"]


def test_config_show_resolves_the_tasks_their_teachers_and_one_actor_per_task(teachers, capsys):
    assert main(["config", "show", *_both(teachers), "--task-balance", "2:1"]) == 0
    text = capsys.readouterr().out
    shown = yaml.safe_load(text)
    assert text.splitlines()[-2:] == [
        "# rows of CartPole-v1: 61 bytes each (float32 observations 4, without the next observation); 100,000 rows in "
        "the buffer: 5.8 MiB",
        "# rows of Acrobot-v1: 73 bytes each (float32 observations 6, without the next observation); 100,000 rows in "
        "the buffer: 7.0 MiB"]
    assert shown["env"] == "CartPole-v1" and shown["tasks"] == ["CartPole-v1", "Acrobot-v1"]
    assert shown["teachers"] == teachers and shown["teacher"] is None
    assert (shown["actors"], shown["task_balance"], shown["task_batches"], shown["task_inputs"]) == \
        (2, "2:1", "mixed", "per-task")


@pytest.mark.parametrize("extra,message", [
    (["--env", "CartPole-v1"], "env 'CartPole-v1' is given twice: give each task's env once"),
    (["--actors", "3"], "actors 3 do not divide over 2 tasks: give --actors as a multiple of 2 (the actors are "
                        "spread evenly over the tasks), or each task's with --task-actors, e.g. 1:1"),
    (["--task-actors", "2:0"], "task actors '2:0' are not valid: expected 2 counts >= 1 joined by ':', one per task "
                               "(e.g. '1:1')"),
    (["--task-actors", "2:x"], "task actors '2:x' are not valid: expected 2 counts >= 1 joined by ':', one per task "
                               "(e.g. '1:1')"),
    (["--task-actors", "2:1", "--actors", "4"], "task actors '2:1' make 3 actors, not actors 4: give one of "
                                                "--task-actors and --actors"),
    (["--task-balance", "1:1:1"], "task balance '1:1:1' is not valid: expected 'equal' or 2 weights >= 0 joined by "
                                  "':' (e.g. '1:1'), one per task, not all 0"),
    (["--task-batches", "some"], "task batches 'some' are not known: expected one of mixed, one"),
    (["--task-inputs", "concat"], "task inputs 'concat' are not known: expected one of per-task, pad"),
    (["--teacher-learns"], "--teacher-learns is for one-task runs: a multi-task run distills fixed teachers, each "
                           "acting in its own task"),
    (["--behaviour", "mixed"], "--behaviour mixed is for one-task runs: a multi-task run distills fixed teachers, "
                               "each acting in its own task"),
    (["--mode", "offline"], "several tasks need mode online"),
    (["--students", "16"], "network spec '16' has one hidden layer: with an input layer per task and a head per task "
                           "nothing is left to share; give two layers or more (e.g. '64x64'), or pad the inputs"),
])
def test_bad_multi_task_settings_are_refused_in_one_line(teachers, capsys, tmp_path, extra, message):
    _refused(capsys, tmp_path, [*_both(teachers), *extra], message)


def test_teachers_that_do_not_fit_the_tasks_are_refused_in_one_line(teachers, capsys, tmp_path):
    envs = ["--env", "CartPole-v1", "--env", "Acrobot-v1"]
    _refused(capsys, tmp_path, [*envs, "--teacher", f"CartPole-v1={teachers['CartPole-v1']}"],
             "no teacher for Acrobot-v1: give --teacher ENV=PATH for every task")
    _refused(capsys, tmp_path, [*_both(teachers), "--teacher", teachers["CartPole-v1"]],
             "a multi-task run takes a teacher for each task (--teacher ENV=PATH for every task) or one --teacher PATH "
             "of a multi-task network of all of them, not both")
    _refused(capsys, tmp_path, [*_both(teachers), "--teacher", f"LunarLander-v3={teachers['CartPole-v1']}"],
             "a teacher for 'LunarLander-v3', which is not among the run's tasks (CartPole-v1, Acrobot-v1): give "
             "--env LunarLander-v3, or drop its teacher")
    _refused(capsys, tmp_path, [*envs, "--teacher", f"CartPole-v1={teachers['CartPole-v1']}",
                                "--teacher", f"Acrobot-v1={teachers['CartPole-v1']}"],
             f"checkpoint {teachers['CartPole-v1']!r} was made for env 'CartPole-v1', not 'Acrobot-v1'; observation "
             "shape (4,), not (6,); 2 actions, not 3")
    _refused(capsys, tmp_path, [*envs, "--teacher", teachers["CartPole-v1"]],
             f"checkpoint {teachers['CartPole-v1']!r} was made for env 'CartPole-v1', not 'Acrobot-v1'; observation "
             "shape (4,), not (6,); 2 actions, not 3")
    _refused(capsys, tmp_path, ["--env", "CartPole-v1", "--teacher", f"CartPole-v1={teachers['CartPole-v1']}"],
             f"--teacher CartPole-v1={teachers['CartPole-v1']} names an env, but the run has one task: give "
             "--teacher PATH")


def test_a_student_that_cannot_take_a_tasks_observations_is_refused_naming_the_task(teachers, capsys, tmp_path):
    _refused(capsys, tmp_path, [*_both(teachers), "--students", "c8k3s1-16"],
             "network spec 'c8k3s1-16' is convolutional, but the env's observations are vectors of shape (4,): give "
             "an MLP spec such as '256x256' (CartPole-v1)")


def test_a_multi_task_teacher_run_refuses_a_target_and_an_init_of_other_tasks(teachers, capsys, tmp_path):
    out, envs = tmp_path / "run", ["--env", "CartPole-v1", "--env", "Acrobot-v1"]
    assert main(["train-teacher", *envs, "--target-return", "100", "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("qdistill: error: a target return is for one task: a multi-task run stops on "
                                       "its budget (give --no-target, or one --env)\n")
    whole = checkpoint.save_multitask(tmp_path / "mt.pt", checkpoint.MultiTaskCheckpoint(
        "32x32", ("Acrobot-v1", "CartPole-v1"), ((6,), (4,)), (3, 2), "per-task", 0, {}))
    assert main(["train-teacher", *envs, "--init", str(whole), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"qdistill: error: checkpoint {str(whole)!r} is a network '32x32' of "
                                       "Acrobot-v1, CartPole-v1, not '32x32' of CartPole-v1, Acrobot-v1\n")
    assert not out.exists()


def test_a_config_file_names_the_tasks_and_their_teachers(teachers, capsys, tmp_path):
    file = tmp_path / "mt.toml"
    file.write_text('tasks = ["CartPole-v1", "Acrobot-v1"]\ntask_batches = "one"\n\n[teachers]\n'
                    + "".join(f'"{env}" = "{path}"\n' for env, path in teachers.items()))
    assert main(["config", "show", "--config", str(file)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["env"], shown["tasks"], shown["teachers"], shown["task_batches"]) == \
        ("CartPole-v1", ["CartPole-v1", "Acrobot-v1"], teachers, "one")
    file.write_text('tasks = ["CartPole-v1", "Acrobot-v1"]\n\n[teachers]\n"CartPole-v1" = 3\n')
    assert main(["config", "show", "--config", str(file)]) == 2
    assert capsys.readouterr().err == (f"qdistill: error: {file}: teachers should be a table of names with strings, "
                                       'not {"CartPole-v1": 3}\n')
