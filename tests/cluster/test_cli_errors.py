"""Bad input: one line naming the value and what is accepted, exit code 2, nothing written."""

import json
import re
import subprocess

import gymnasium as gym
import numpy as np
import pytest
import redis
import torch

from qdistill.cluster.cli import main
from qdistill.actors.wire import Schema
from qdistill.learners import checkpoint
from tests.support.cli import as_process, in_process
from tests.support.redis_server import RedisServer, free_port
from qdistill.learners.networks import QNetwork, to_numpy


def _assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"qdistill: error: {message}\n"


CASES = [
    (["--env", "NoSuchEnv-v0"],
     "unknown env id 'NoSuchEnv-v0': expected a registered Gymnasium id such as 'CartPole-v1', 'LunarLander-v3', 'MinAtar/Breakout-v1' or 'ALE/Pong-v5'"),
    (["--env", "Pendulum-v1"],
     "env 'Pendulum-v1' has a Box action space: DQN needs a Discrete action space (e.g. 'CartPole-v1', 'LunarLander-v3')"),
    (["--env", "CartPole-v1", "--net", "256y256"],
     "network spec '256y256' is not valid: expected hidden layer widths joined by 'x' (e.g. '256x256' or '64'), convolutions then widths joined by '-' (e.g. 'c16k3s1-128': 16 filters 3x3 stride 1, then 128), or a preset: nature, minatar; 'norm-' before widths normalises the observations (e.g. 'norm-256x256')"),
    (["--env", "CartPole-v1", "--steps", "0"], "steps budget 0 is not valid: expected an integer > 0"),
    (["--env", "CartPole-v1", "--steps", "-10"], "steps budget -10 is not valid: expected an integer > 0"),
    (["--env", "CartPole-v1", "--time", "0"], "time budget 0.0 is not valid: expected a number of seconds > 0"),
    (["--env", "CartPole-v1", "--time", "-3"], "time budget -3.0 is not valid: expected a number of seconds > 0"),
    (["--env", "CartPole-v1", "--seed", "-1"], "seed -1 is not valid: expected an integer >= 0"),
    (["--env", "CartPole-v1", "--batch-size", "0"], "batch_size 0 is not valid: expected a number > 0"),
    (["--env", "CartPole-v1", "--n-step", "0"], "n_step 0 is not valid: expected an integer in [1, 100]"),
    (["--env", "CartPole-v1", "--buffer-capacity", "0"], "buffer_capacity 0 is not valid: expected an integer >= 1"),
    (["--env", "CartPole-v1", "--buffer-capacity", "32"],
     "buffer_capacity 32 is smaller than the batch size 64: expected a capacity of at least one batch"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[c[1].split(":")[0][:40] for c in CASES])
def test_bad_input_is_refused(tmp_path, args, message):
    out = tmp_path / "run"
    _assert_refused(in_process("train-teacher", *args, "--out", str(out)), message)
    assert not out.exists()


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _assert_refused(in_process("train-teacher", "--env", "CartPole-v1", "--out", str(blocker / "run")),
                    f"output directory '{blocker / 'run'}' is not writable: '{blocker}' is not a directory")
    result = in_process("train-teacher", "--env", "CartPole-v1", "--out", "/proc/qdistill-run")
    assert result.returncode == 2
    assert result.stderr.startswith("qdistill: error: output directory '/proc/qdistill-run' is not writable: ")
    assert result.stderr.count("\n") == 1


def test_non_empty_output_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    _assert_refused(in_process("train-teacher", "--env", "CartPole-v1", "--out", str(tmp_path)),
                    f"output directory '{tmp_path}' is not empty: give a new or empty directory")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_checkpoint_for_another_env(tmp_path):
    path = tmp_path / "acrobot.pt"
    checkpoint.save(path, checkpoint.Checkpoint("64", (6,), 3, "Acrobot-v1", 1,
                                                to_numpy(QNetwork("64", (6,), 3).state_dict())))
    out = tmp_path / "run"
    _assert_refused(in_process("train-teacher", "--env", "CartPole-v1", "--init", str(path), "--out", str(out)),
                    f"checkpoint '{path}' was made for env 'Acrobot-v1', not 'CartPole-v1'; "
                    "observation shape (6,), not (4,); 3 actions, not 2")
    assert not out.exists()


RUN_CASES = [
    (["--loss", "hinge"], "loss 'hinge' is not known: expected one of mse, kl, nll"),
    (["--tau", "0"], "tau 0.0 is not valid: expected a temperature > 0"),
    (["--tau", "-0.5"], "tau -0.5 is not valid: expected a temperature > 0"),
    (["--students", "16y16"],
     "network spec '16y16' is not valid: expected hidden layer widths joined by 'x' (e.g. '256x256' or '64'), convolutions then widths joined by '-' (e.g. 'c16k3s1-128': 16 filters 3x3 stride 1, then 128), or a preset: nature, minatar; 'norm-' before widths normalises the observations (e.g. 'norm-256x256')"),
    (["--students", ""], "student spec list '' is empty: give network specs joined by ',', e.g. '64x64,16x16'"),
    (["--students", "16x16,"],
     "network spec '' is not valid: expected hidden layer widths joined by 'x' (e.g. '256x256' or '64'), convolutions then widths joined by '-' (e.g. 'c16k3s1-128': 16 filters 3x3 stride 1, then 128), or a preset: nature, minatar; 'norm-' before widths normalises the observations (e.g. 'norm-256x256')"),
    (["--students", "16x16,64x64,16x16"], "students name '16x16' twice: give each student spec once"),
    (["--behaviour", "random"], "behaviour 'random' is not known: expected one of teacher, student, mixed"),
    (["--refresh", "sometimes"], "refresh 'sometimes' is not known: expected one of periodic, on-sample, off"),
    (["--mode", "batch"], "mode 'batch' is not known: expected one of online, offline"),
    (["--batch-size", "0"], "distill batch_size 0 is not valid: expected an integer >= 1"),
    (["--buffer-capacity", "100"],
     "buffer_capacity 100 is smaller than the batch size 256: expected a capacity of at least one batch"),
    (["--rate-tolerance", "100"], "rate tolerance 100 is too small for inserts of 256 rows and samples of 32768 at "
                                  "25.6 samples per insert: expected at least 19660.8 rows"),
    (["--rate-tolerance", "-1"], "rate_tolerance -1.0 is not valid: expected a number of rows >= 0"),
    (["--eval-ci", "0"], "eval_ci 0.0 is not valid: expected the widest 95% interval of % of teacher to accept, in "
                         "points > 0 (e.g. 5)"),
    (["--eval-max-episodes", "10"],
     "eval_max_episodes 10 is not valid: expected an integer >= the evaluations' episodes (20)"),
]


@pytest.mark.parametrize("args, message", RUN_CASES, ids=[c[1].split(":")[0][:40] for c in RUN_CASES])
def test_run_bad_input_is_refused(tmp_path, args, message):
    out = tmp_path / "run"
    _assert_refused(in_process("run", "--env", "CartPole-v1", *args, "--out", str(out)), message)
    assert not out.exists()


def test_run_teacher_checkpoints_are_checked(tmp_path):
    out = tmp_path / "run"
    missing = tmp_path / "nope.pt"
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--teacher", str(missing), "--out", str(out)),
                    f"checkpoint '{missing}' does not exist")
    acrobot = tmp_path / "acrobot.pt"
    checkpoint.save(acrobot, checkpoint.Checkpoint("64", (6,), 3, "Acrobot-v1", 1,
                                                   to_numpy(QNetwork("64", (6,), 3).state_dict())))
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--teacher", str(acrobot), "--out", str(out)),
                    f"checkpoint '{acrobot}' was made for env 'Acrobot-v1', not 'CartPole-v1'; "
                    "observation shape (6,), not (4,); 3 actions, not 2")
    # same env id, other action count (a checkpoint edited or made for a variant)
    odd = tmp_path / "odd.pt"
    checkpoint.save(odd, checkpoint.Checkpoint("64", (4,), 3, "CartPole-v1", 1,
                                               to_numpy(QNetwork("64", (4,), 3).state_dict())))
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--teacher", str(odd), "--out", str(out)),
                    f"checkpoint '{odd}' was made for 3 actions, not 2")
    assert not out.exists()


@pytest.mark.slow
def test_buffer_urls_are_checked_before_anything_starts(tmp_path, redis_server, redis_prefix):
    out = tmp_path / "run"
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--buffer", "mongodb://x", "--out", str(out)),
                    "buffer 'mongodb://x' is not valid: expected 'ray' or redis://[user:password@]host:port/db "
                    "(rediss:// for TLS)")
    port = free_port()
    result = in_process("train-teacher", "--env", "CartPole-v1", "--buffer", f"redis://127.0.0.1:{port}/0", "--out", str(out))
    assert result.returncode == 2 and result.stderr.startswith(f"qdistill: error: cannot reach redis at 127.0.0.1:{port}: ")
    assert result.stderr.count("\n") == 1
    # a prefix that holds a LunarLander buffer is refused for CartPole, and left as it was
    from qdistill.actors.redis_buffer import RedisBuffer, RedisSpec
    from qdistill.actors.wire import Schema

    RedisBuffer(RedisSpec(redis_server.url, redis_prefix, 1000, 256, Schema((8,), 4))).close()
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--buffer", redis_server.url, "--buffer-prefix", redis_prefix,
                         "--out", str(out)),
                    f"redis prefix '{redis_prefix}' at 127.0.0.1:{redis_server.port} holds another run's buffer "
                    "(field observations is <f4 (8,), not <f4 (4,)): use another prefix, or delete its keys")
    assert not out.exists()


def test_eval_needs_a_run_directory_or_a_checkpoint(tmp_path):
    _assert_refused(in_process("eval", str(tmp_path)),
                    f"run directory '{tmp_path}' has no checkpoints/teacher.pt: expected a `qdistill run` "
                    "directory, or a checkpoint file")


def _assert_no_node_can_host(out, flag: str, request: str, message: str) -> None:
    """Refused at once, naming the request and what the nodes offer; nothing written."""
    result = in_process("train-teacher", "--env", "CartPole-v1", flag, request, "--out", str(out))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"qdistill: error: {message}: the nodes offer CPU ")
    assert result.stderr.count("\n") == 1 and not out.exists()


@pytest.mark.slow
def test_an_actor_no_node_can_host_is_refused_at_once(ray_session, tmp_path):
    out = tmp_path / "run"
    _assert_no_node_can_host(out, "--actor-resources", '{"gpu_box": 1}',
                             "no node can host a rollout actor asking for CPU 1, gpu_box 1")
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--actor-resources", '{"rollout": -1}', "--out", str(out)),
                    "actor resources {'rollout': -1} are not valid: expected names with numbers >= 0, "
                    'e.g. {"rollout": 1}')


@pytest.mark.slow
def test_a_learner_no_node_can_host_is_refused_at_once(ray_session, tmp_path):
    _assert_no_node_can_host(tmp_path / "run", "--learner-resources", '{"GPU": 1}',
                             "no node can host the learner asking for GPU 1")


def _run_dir(tmp_path, **config_changes):
    """A run directory as `qdistill run` leaves it: its resolved config (and a file to see it untouched)."""
    from qdistill.cluster.config import distill_config

    run = tmp_path / "cartpole-run"
    run.mkdir(parents=True)
    config = {**distill_config("CartPole-v1", str(run)).to_dict(), **config_changes}
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.jsonl").write_text("")
    return run


def _untouched(run) -> None:
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl"]
    assert (run / "metrics.jsonl").read_text() == ""


def test_resuming_a_run_directory_made_for_another_env(tmp_path):
    run = _run_dir(tmp_path)
    _assert_refused(in_process("run", "--resume", str(run), "--env", "Acrobot-v1"),
                    f"run directory '{run}' was made for CartPole-v1, not Acrobot-v1")
    _untouched(run)


def test_resume_refuses_what_it_cannot_honour(tmp_path):
    _assert_refused(in_process("run", "--resume", str(tmp_path)),
                    f"run directory '{tmp_path}' has no config.json: expected a directory made by `qdistill run`")
    run = _run_dir(tmp_path)
    _assert_refused(in_process("run", "--resume", str(run), "--lr", "0.1", "--students", "8"),
                    "--resume carries on with the run's own config: --lr, --students cannot be given with it "
                    "(only --steps, --time, --actors, --address, --buffer, --buffer-ca, --buffer-cert, --buffer-key, "
                    "--detach, --learner-resources, --quiet)")
    _untouched(run)


def test_a_run_config_with_an_unknown_key_or_a_wrong_type(tmp_path):
    run = _run_dir(tmp_path, bogus=1)
    _assert_refused(in_process("run", "--resume", str(run)), f"{run / 'config.json'}: unknown key 'bogus'")
    run = _run_dir(tmp_path / "other", actors="two")
    _assert_refused(in_process("run", "--resume", str(run)), f'{run / "config.json"}: actors should be an integer, not "two"')


@pytest.mark.slow
def test_detach_needs_a_cluster_to_outlive_the_command(tmp_path):
    out = tmp_path / "run"
    _assert_refused(as_process("run", "--env", "CartPole-v1", "--detach", "--out", str(out)),
                    "--detach needs a running Ray cluster to outlive this command: start one with "
                    "`ray start --head` and give --address (e.g. --address auto)")
    assert not out.exists()


def test_scale_needs_at_least_one_actor():
    _assert_refused(in_process("scale", "some-run", "--actors", "0"), "--actors 0 is not valid: expected an integer >= 1")


def test_truncated_and_newer_checkpoints_are_refused(tmp_path):
    path = tmp_path / "teacher.pt"
    checkpoint.save(path, checkpoint.Checkpoint("64", (4,), 2, "CartPole-v1", 1,
                                                to_numpy(QNetwork("64", (4,), 2).state_dict())))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "run"
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--teacher", str(path), "--out", str(out)),
                    f"checkpoint '{path}' is not a qdistill checkpoint (unreadable: truncated, or another kind of "
                    "file): RuntimeError")
    torch.save({"schema": checkpoint.SCHEMA_VERSION + 1, "net": "64"}, path)
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--teacher", str(path), "--out", str(out)),
                    f"checkpoint '{path}' has schema version {checkpoint.SCHEMA_VERSION + 1}, newer than this "
                    f"qdistill reads ({checkpoint.SCHEMA_VERSION}): upgrade qdistill to load it")
    assert not out.exists()


class _Pixels(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)


class _Sequences(gym.Env):
    observation_space = gym.spaces.Sequence(gym.spaces.Discrete(3))
    action_space = gym.spaces.Discrete(2)


@pytest.mark.parametrize("env_class, flags, message", [
    (_Pixels, ["--students", "16x16"], "network spec '16x16' is an MLP, but the env's observations are images of "
     "shape (3, 8, 8): give a conv spec such as 'minatar', 'nature' or 'c16k3s1-128'"),
    (_Pixels, ["--students", "c8k3s1-16,c4k9s1-8"], "network spec 'c4k9s1-8': convolution 1 has a 9x9 kernel but "
     "its input is 8x8: use smaller kernels or strides for (3, 8, 8) frames"),
    (_Sequences, [], "env 'qdistill-test/Obs-v0' has a Sequence(Discrete(3), stack=False) observation space: qdistill "
     "takes Box observations (vectors, or uint8/bool images) and Discrete, MultiDiscrete, MultiBinary, Tuple and Dict "
     "ones (flattened); wrap the env in a Gymnasium observation wrapper that gives one of those"),
])
def test_observations_the_networks_cannot_take_are_refused(tmp_path, capsys, env_class, flags, message):
    gym.register("qdistill-test/Obs-v0", entry_point=env_class)
    out = tmp_path / "run"
    try:
        assert main(["run", "--env", "qdistill-test/Obs-v0", "--out", str(out), *flags]) == 2
    finally:
        gym.registry.pop("qdistill-test/Obs-v0")
    assert capsys.readouterr().err == f"qdistill: error: {message}\n"
    assert not out.exists()


def test_a_conv_student_for_vectors_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--env", "CartPole-v1", "--students", "minatar", "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("qdistill: error: network spec 'minatar' is convolutional, but the env's "
                                       "observations are vectors of shape (4,): give an MLP spec such as '256x256'\n")
    assert not out.exists()


RECORD = Schema((4,), 2, next_obs=False).record_size  # bytes per CartPole row of a fixed teacher (no next observation)


@pytest.mark.slow
def test_a_buffer_the_head_cannot_hold_is_refused(ray_session, tmp_path):
    out = tmp_path / "run"
    result = in_process("run", "--env", "CartPole-v1", "--buffer-capacity", "10000000000", "--out", str(out))
    assert result.returncode == 2 and result.stdout == ""
    need = 10_000_000_000 * RECORD / 2**30
    assert re.fullmatch(rf"qdistill: error: a buffer of 10,000,000,000 transitions of {RECORD} bytes needs "
                        rf"{need:.1f} GiB: the head node, which holds the buffer shards, has \d+\.\d GiB of memory "
                        r"for Ray; lower --buffer-capacity, or cap it with --buffer-bytes\n", result.stderr)
    _assert_refused(in_process("run", "--env", "CartPole-v1", "--buffer-bytes", "100", "--out", str(out)),
                    f"buffer_bytes 100 holds 1 transitions of {RECORD} bytes, fewer than the batch size 256: "
                    f"expected at least {256 * RECORD} bytes")
    result = in_process("run", "--env", "CartPole-v1", "--envs-per-actor", "100000000", "--out", str(out))
    assert result.returncode == 2 and result.stdout == ""
    flight = (1 * 2 * 32 * 100_000_000 + 2 * 256 * 4) * RECORD / 2**30
    assert re.fullmatch(rf"qdistill: error: transitions in flight need {flight:.1f} GiB \(1 actors x 2 batches of "
                        r"3,200,000,000, and 2 sampled chunks\): the head node's object store holds \d+\.\d GiB; "
                        r"lower --envs-per-actor or --actors\n", result.stderr)
    assert not out.exists()


@pytest.mark.slow
def test_a_size_that_is_not_a_size_is_refused(tmp_path):
    result = as_process("run", "--env", "CartPole-v1", "--buffer-bytes", "2X", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == \
        "qdistill run: error: argument --buffer-bytes: '2X' is not a size: expected bytes, or a number with K, M " \
        "or G, e.g. 512M"


@pytest.mark.slow
def test_a_buffer_beyond_the_redis_servers_maxmemory_is_refused(tmp_path, redis_prefix):
    server = RedisServer(tmp_path / "redis").start()
    try:
        redis.Redis(port=server.port).config_set("maxmemory", str(2**20))
        out = tmp_path / "run"
        _assert_refused(in_process("run", "--env", "CartPole-v1", "--buffer", server.url, "--buffer-prefix", redis_prefix,
                             "--buffer-capacity", "100000", "--out", str(out)),
                        f"a buffer of 100,000 transitions of {RECORD} bytes needs {100_000 * RECORD / 2**20:.1f} MiB: "
                        "the redis server's maxmemory is 1.0 MiB; lower --buffer-capacity, cap it with --buffer-bytes, "
                        "or raise the server's maxmemory")
        assert not out.exists() and redis.Redis(port=server.port).keys(f"{redis_prefix}*") == []
    finally:
        server.stop()


def test_tls_files_are_checked_before_anything_starts(tmp_path, capsys):
    """--buffer-ca, --buffer-cert and --buffer-key (or a config file's buffer_ca, …) need a rediss://
    buffer and readable files, and a key its certificate; on --resume too. Nothing is contacted."""
    out, pem, missing = tmp_path / "run", tmp_path / "ca.pem", tmp_path / "nope.pem"
    pem.write_text("")  # read only when a connection is made

    def refused(*args: str, message: str, command: str = "train-teacher") -> None:
        assert main([command, *args]) == 2
        assert capsys.readouterr() == ("", f"qdistill: error: {message}\n")

    refused("--env", "CartPole-v1", "--buffer-ca", str(pem), "--out", str(out),
            message="--buffer-ca needs a rediss:// buffer (TLS), not 'ray': give --buffer "
                    "rediss://[user:password@]host:port/db")
    refused("--env", "CartPole-v1", "--buffer", "redis://:secret@127.0.0.1:1/0", "--buffer-cert", str(pem),
            "--buffer-key", str(pem), "--out", str(out),
            message="--buffer-cert and --buffer-key need a rediss:// buffer (TLS), not 'redis://:***@127.0.0.1:1/0': "
                    "give --buffer rediss://[user:password@]host:port/db")
    refused("--env", "CartPole-v1", "--buffer", "rediss://127.0.0.1:1/0", "--buffer-ca", str(missing),
            "--out", str(out),
            message=f"--buffer-ca '{missing}' cannot be read (No such file or directory): expected a PEM file of the "
                    "CA certificate that signed the server's certificate")
    refused("--env", "CartPole-v1", "--buffer", "rediss://127.0.0.1:1/0", "--buffer-key", str(pem), "--out", str(out),
            message=f"--buffer-key '{pem}' needs --buffer-cert: expected the client certificate that goes with the key")
    config = tmp_path / "tls.toml"
    config.write_text(f'env = "CartPole-v1"\nbuffer_ca = "{pem}"\n')
    refused("--config", str(config), "--out", str(out), command="run",
            message="--buffer-ca needs a rediss:// buffer (TLS), not 'ray': give --buffer "
                    "rediss://[user:password@]host:port/db")
    config.write_text('env = "CartPole-v1"\nbuffer = "rediss://127.0.0.1:1/0"\nbuffer_key = 3\n')
    refused("--config", str(config), "--out", str(out), command="run",
            message=f"{config}: buffer_key should be a string, not 3")
    assert not out.exists()
    run = _run_dir(tmp_path)  # --resume takes the TLS flags (certificates are rotated), for a rediss:// buffer
    refused("--resume", str(run), "--buffer-ca", str(pem), command="run",
            message="--buffer-ca needs a rediss:// buffer (TLS), not 'ray': give --buffer "
                    "rediss://[user:password@]host:port/db")
    _untouched(run)


@pytest.mark.parametrize("args, which", [([], "neither"), (["somerun", "--all"], "both")])
def test_stop_takes_a_run_or_all(capsys, args, which):
    assert main(["stop", *args]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"qdistill: error: qdistill stop takes a run name or --all, not {which}\n")
