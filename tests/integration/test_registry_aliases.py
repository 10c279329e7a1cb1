"""The registry as a control point, on the real S3 (SeaweedFS) and MLflow server: compare-and-set alias moves
that cannot both win a race (threads and processes racing for real), the audit trail of every move in one
call, the champion -> previous step, retries that land on their first record, and MLflow healing after a lag."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from factory_providers.mlflow.aliases import APPLIED_SEQ_TAG, AliasRegistry

from factory.cli import main as factory_cli
from factory.stack import Stack, s3_client
from pipelines.alias_log import UNCONDITIONAL, AliasConflictError, AliasMoveError, holdings

pytestmark = pytest.mark.services


def make_registry(stack: Stack) -> AliasRegistry:
    from mlflow import MlflowClient

    settings = stack.settings
    return AliasRegistry(
        s3_client(settings, stack.credentials), MlflowClient(settings.mlflow_url), bucket=settings.data_bucket
    )


@pytest.fixture(scope="module")
def registry(live_stack: Stack) -> AliasRegistry:
    return make_registry(live_stack)


@pytest.fixture(scope="module")
def new_model(live_stack: Stack) -> Callable[[int], tuple[str, list[str]]]:
    """`new_model(n)`: a fresh registered model with n versions (one small run each), for isolated tests."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(live_stack.settings.mlflow_url)
    mlflow.set_tracking_uri(live_stack.settings.mlflow_url)
    experiment = mlflow.set_experiment("factory/alias-tests").experiment_id

    def create(versions: int) -> tuple[str, list[str]]:
        name = f"alias-test-{uuid.uuid4().hex[:8]}"
        client.create_registered_model(name)
        numbers = []
        for _ in range(versions):
            run = client.create_run(experiment)
            client.log_text(run.info.run_id, "placeholder", "model/README.txt")
            client.set_terminated(run.info.run_id)
            source = f"runs:/{run.info.run_id}/model"
            numbers.append(str(client.create_model_version(name, source, run.info.run_id).version))
        return name, numbers

    return create


def test_seaweedfs_refuses_a_second_create_only_put(live_stack: Stack):
    """The primitive everything rests on: If-None-Match: * on an existing key is refused with 412."""
    s3 = s3_client(live_stack.settings, live_stack.credentials)
    key = f"tests/create-only/{uuid.uuid4().hex}"
    s3.put_object(Bucket="factory-data", Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="factory-data", Key=key, Body=b"second", IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket="factory-data", Key=key)["Body"].read() == b"first"


def race(contenders: int, attempt: Callable[[int], Any]) -> tuple[list[Any], list[Exception]]:
    """Start `contenders` threads at one barrier; each calls attempt(i). Returns (results, conflicts)."""
    barrier = threading.Barrier(contenders)
    wins: list[Any] = []
    conflicts: list[Exception] = []
    failures: list[Exception] = []  # anything but a conflict fails the test with its own message

    def run(i: int) -> None:
        barrier.wait()
        try:
            wins.append((i, attempt(i)))
        except AliasConflictError as error:
            conflicts.append(error)
        except Exception as error:  # re-raised in the test thread below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if failures:
        raise failures[0]
    return wins, conflicts


def test_concurrent_moves_from_the_same_state_have_exactly_one_winner(live_stack, registry, new_model):
    """8 threads (each with its own S3 and MLflow clients) race to move `challenger` from the same expected
    holder to 8 other versions, 6 rounds in a row: one wins each round, the other 7 get a conflict."""
    model, versions = new_model(9)
    holder: str | None = None
    for round_number in range(6):
        targets = [version for version in versions if version != holder][:8]  # moving to the holder is a no-op
        contenders = [make_registry(live_stack) for _ in targets]

        def attempt(
            i: int, expected: str | None = holder, clients: list[AliasRegistry] = contenders, to: list[str] = targets
        ) -> str:
            move = clients[i].move_alias(model, "challenger", to[i], expected=expected, actor=f"thread-{i}", reason="r")
            return move.aliases["challenger"]

        wins, conflicts = race(len(targets), attempt)
        assert len(wins) == 1, f"round {round_number}: {len(wins)} winners {wins}"
        assert len(conflicts) == len(targets) - 1
        winner = wins[0][1]
        assert registry.current(model)["challenger"] == winner
        assert registry.mlflow.get_model_version_by_alias(model, "challenger").version == winner
        holder = winner
    history = registry.alias_history(model)
    assert [entry.seq for entry in history] == list(range(1, 7))  # one record per round, no gap, no duplicate


def _process_contender(settings_env: dict[str, str], model: str, version: str, expected: str | None, go: Any) -> str:
    """Runs in a separate process: one move, reported as "won <seq>" or "conflict"."""
    from factory.settings import StackSettings

    stack = Stack(StackSettings.from_env(settings_env), env={}, report=lambda line: None)
    contender = make_registry(stack)
    go.wait()
    try:
        move = contender.move_alias(
            model, "champion", version, expected=expected, actor=f"pid-{version}", reason="race"
        )
    except AliasConflictError:
        return "conflict"
    return f"won {move.seq}"


def test_concurrent_promotions_in_separate_processes_cannot_both_win(live_stack, registry, new_model):
    model, versions = new_model(4)
    settings = live_stack.settings
    env = {"FACTORY_HOME": str(settings.home)} | {
        f"FACTORY_PORT_{name.upper()}": str(port) for name, port in settings.ports.as_dict().items()
    }
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(len(versions)) as pool:
        go = manager.Barrier(len(versions))
        results = pool.starmap(_process_contender, [(env, model, version, None, go) for version in versions])
    assert sorted(results) == ["conflict"] * (len(versions) - 1) + ["won 1"], results
    assert [entry.seq for entry in registry.alias_history(model)] == [1]


def test_moves_of_different_aliases_from_the_same_state_all_succeed(live_stack, registry, new_model):
    """The log serialises every move, but only a move whose own expectation broke is refused."""
    model, versions = new_model(3)
    moves = [("candidate", versions[0]), ("challenger", versions[1]), ("champion", versions[2])]
    contenders = [make_registry(live_stack) for _ in moves]

    def attempt(i: int) -> int:
        alias, version = moves[i]
        return contenders[i].move_alias(model, alias, version, expected=None, actor=f"t{i}", reason="x").seq

    wins, conflicts = race(len(moves), attempt)
    assert not conflicts and sorted(seq for _, seq in wins) == [1, 2, 3]
    assert registry.current(model) == {"candidate": versions[0], "challenger": versions[1], "champion": versions[2]}
    assert registry.mlflow.get_registered_model(model).aliases == registry.current(model)


def test_promotion_keeps_the_old_champion_as_previous_and_history_lists_every_move(
    live_stack, registry, new_model, monkeypatch, capsys
):
    model, (v1, v2, v3) = new_model(3)
    registry.move_alias(
        model, "candidate", v1, expected=UNCONDITIONAL, actor="airflow:train/run-1", reason="registered"
    )
    registry.move_alias(model, "champion", v1, expected=None, actor="airflow:deploy/run-1", reason="first champion")
    promoted = registry.move_alias(
        model, "champion", v2, expected=v1, actor="airflow:deploy/run-2", reason="rollout passed",
        report_uri="runs:/abc/gate/gate_report.html", details={"approved_by": "ops"},
    )  # fmt: skip
    assert [(c.alias, c.from_version, c.to_version) for c in promoted.changes] == [
        ("champion", v1, v2),
        ("previous", None, v1),
    ]
    with pytest.raises(AliasConflictError, match=f"champion is held by version {v2}, not version {v1}"):
        registry.move_alias(model, "champion", v3, expected=v1, actor="stale", reason="stale view")
    aliases = registry.mlflow.get_registered_model(model).aliases
    assert aliases == {"candidate": v1, "champion": v2, "previous": v1}

    history = registry.alias_history(model)  # the whole audit trail in one call
    assert [(entry.seq, entry.actor) for entry in history] == [
        (1, "airflow:train/run-1"),
        (2, "airflow:deploy/run-1"),
        (3, "airflow:deploy/run-2"),
    ]
    assert history[2].report_uri == "runs:/abc/gate/gate_report.html" and history[2].details == {"approved_by": "ops"}
    assert all(entry.at.tzinfo is not None for entry in history)
    champions = [(span.version, span.until_seq) for span in holdings(history) if span.alias == "champion"]
    assert champions == [(v1, 3), (v2, None)]

    settings = live_stack.settings
    monkeypatch.setenv("FACTORY_HOME", str(settings.home))
    for name, port in settings.ports.as_dict().items():
        monkeypatch.setenv(f"FACTORY_PORT_{name.upper()}", str(port))
    assert factory_cli(["registry", "history", model]) == 0
    printed = capsys.readouterr().out
    assert f"champion: v{v1} -> v{v2}; previous: - -> v{v1}" in printed
    assert "why: rollout passed" in printed and "approved_by: ops" in printed
    assert f"Now: candidate=v{v1} champion=v{v2} previous=v{v1}" in printed
    assert "MLflow aliases applied up to record 3 (in step)" in printed


def test_a_retried_request_returns_its_first_record_instead_of_a_conflict(registry, new_model):
    model, (v1, v2) = new_model(2)
    first = registry.move_alias(model, "challenger", v1, expected=None, actor="task", reason="x", request_id="req-1")
    again = registry.move_alias(model, "challenger", v1, expected=None, actor="task", reason="x", request_id="req-1")
    assert again == first
    registry.move_alias(model, "challenger", v2, expected=v1, actor="other", reason="later move")
    assert (
        registry.move_alias(model, "challenger", v1, expected=None, actor="t", reason="x", request_id="req-1") == first
    )
    with pytest.raises(AliasConflictError):  # a different request with the same stale view is refused
        registry.move_alias(model, "challenger", v1, expected=None, actor="t", reason="x", request_id="req-2")
    assert len(registry.alias_history(model)) == 2


def test_mlflow_aliases_that_lag_the_log_are_healed(registry, new_model):
    """A crash between the claim and applying it to MLflow leaves MLflow behind: `sync` (or the next move)
    re-applies the log's state."""
    model, (v1, v2) = new_model(2)
    registry.move_alias(model, "champion", v1, expected=None, actor="deploy", reason="x")
    client = registry.mlflow
    client.set_registered_model_alias(model, "champion", v2)  # someone bypasses the registry
    client.set_registered_model_alias(model, "previous", v2)
    client.set_registered_model_tag(model, APPLIED_SEQ_TAG, "0")
    assert registry.sync(model).seq == 1
    assert client.get_registered_model(model).aliases == {"champion": v1}
    assert client.get_registered_model(model).tags[APPLIED_SEQ_TAG] == "1"


def test_impossible_moves_write_nothing(registry, new_model):
    model, (v1,) = new_model(1)
    with pytest.raises(AliasMoveError, match=f"registered model '{model}' has no version 99"):
        registry.move_alias(model, "challenger", "99", expected=None, actor="t", reason="x")
    with pytest.raises(AliasMoveError, match="'previous' moves only when a champion is replaced"):
        registry.move_alias(model, "previous", v1, expected=None, actor="t", reason="x")
    assert registry.alias_history(model) == []
