"""The alias log's pure rules: what a move changes, when it conflicts, how history reads back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.alias_log import (
    UNCONDITIONAL,
    AliasChange,
    AliasConflictError,
    AliasMove,
    AliasMoveError,
    apply_changes,
    check_log,
    holder_at,
    holdings,
    log_key,
    plan_move,
    seq_of_key,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def record_moves(*moves: tuple[str, str, object]) -> list[AliasMove]:
    """(alias, version, expected) applied in order as log records one hour apart."""
    entries: list[AliasMove] = []
    state: dict[str, str] = {}
    for seq, (alias, version, expected) in enumerate(moves, start=1):
        changes = plan_move(state, alias, version, expected=expected)
        state = apply_changes(state, changes)
        entries.append(
            AliasMove(
                model="flights-hgb",
                seq=seq,
                at=T0 + timedelta(hours=seq),
                actor=f"airflow:factory_train/run-{seq}",
                reason=f"move {seq}",
                report_uri=f"runs:/r{seq}/gate/gate_report.html",
                request_id=f"req-{seq}",
                changes=changes,
                aliases=state,  # type: ignore[arg-type]
            )
        )
    return entries


def test_first_move_needs_the_alias_to_be_free():
    assert plan_move({}, "challenger", "3", expected=None) == [
        AliasChange(alias="challenger", from_version=None, to_version="3")
    ]
    with pytest.raises(AliasConflictError, match="challenger is held by version 2, not nobody as expected"):
        plan_move({"challenger": "2"}, "challenger", "3", expected=None)


def test_stale_expectation_conflicts_and_names_both_versions():
    with pytest.raises(AliasConflictError, match="champion is held by version 5, not version 4 as expected"):
        plan_move({"champion": "5"}, "champion", "6", expected="4")


def test_promoting_a_champion_keeps_the_old_one_as_previous_in_the_same_step():
    changes = plan_move({"champion": "4", "previous": "2"}, "champion", "6", expected="4")
    assert changes == [
        AliasChange(alias="champion", from_version="4", to_version="6"),
        AliasChange(alias="previous", from_version="2", to_version="4"),
    ]
    assert apply_changes({"champion": "4", "previous": "2", "candidate": "7"}, changes) == {
        "candidate": "7",
        "champion": "6",
        "previous": "4",
    }


def test_first_champion_sets_no_previous():
    assert [change.alias for change in plan_move({}, "champion", "1", expected=None)] == ["champion"]


def test_rollback_is_a_champion_move_back_to_previous():
    changes = plan_move({"champion": "6", "previous": "4"}, "champion", "4", expected="6")
    assert apply_changes({"champion": "6", "previous": "4"}, changes) == {"champion": "4", "previous": "6"}


def test_guards_refuse_a_move_when_another_alias_changed():
    state = {"champion": "5", "challenger": "3"}
    plan_move(state, "challenger", "7", expected="3", guards={"champion": "5"})  # unchanged: fine
    with pytest.raises(AliasConflictError, match="champion is held by version 5, not version 4 as this move requires"):
        plan_move(state, "challenger", "7", expected="3", guards={"champion": "4"})
    with pytest.raises(AliasConflictError, match="champion is held by version 5, not nobody"):
        plan_move(state, "challenger", "7", expected="3", guards={"champion": None})


def test_unconditional_moves_whatever_holds_the_alias_and_same_version_is_a_no_op():
    assert plan_move({"candidate": "8"}, "candidate", "9", expected=UNCONDITIONAL)[0].from_version == "8"
    assert plan_move({"candidate": "9"}, "candidate", "9", expected=UNCONDITIONAL) == []
    assert plan_move({"challenger": "9"}, "challenger", "9", expected="9") == []


@pytest.mark.parametrize(
    ("alias", "version", "expected", "message"),
    [
        (
            "staging",
            "1",
            None,
            "unknown alias 'staging': the registry manages candidate, challenger, champion, previous",
        ),
        ("previous", "1", None, "'previous' moves only when a champion is replaced"),
        ("champion", "v1", None, "version 'v1' is not a model version number"),
        ("champion", "0", None, "version '0' is not a model version number"),
        ("champion", "2", "latest", "expected version 'latest' is not a model version number"),
    ],
)
def test_impossible_moves_are_named(alias, version, expected, message):
    with pytest.raises(AliasMoveError, match=message):
        plan_move({}, alias, version, expected=expected)


def test_holdings_say_which_version_held_which_alias_when():
    entries = record_moves(
        ("candidate", "1", UNCONDITIONAL),
        ("champion", "1", None),
        ("candidate", "2", UNCONDITIONAL),
        ("champion", "2", "1"),
    )
    check_log(entries)
    spans = [(s.alias, s.version, s.since_seq, s.until_seq) for s in holdings(entries)]
    assert spans == [
        ("candidate", "1", 1, 3),
        ("champion", "1", 2, 4),
        ("candidate", "2", 3, None),
        ("champion", "2", 4, None),
        ("previous", "1", 4, None),
    ]
    first_champion = holdings(entries)[1]
    assert (first_champion.since, first_champion.until) == (T0 + timedelta(hours=2), T0 + timedelta(hours=4))
    assert first_champion.reason == "move 2" and first_champion.report_uri == "runs:/r2/gate/gate_report.html"
    assert holder_at(entries, "champion", T0 + timedelta(hours=3)) == "1"  # which model served at 15:00
    assert holder_at(entries, "champion", T0 + timedelta(hours=5)) == "2"
    assert holder_at(entries, "champion", T0) is None


def test_a_log_with_a_gap_or_an_inconsistent_record_is_refused():
    entries = record_moves(("challenger", "1", None), ("challenger", "2", "1"), ("challenger", "3", "2"))
    with pytest.raises(ValueError, match="record 3 found where 2 was expected"):
        check_log([entries[0], entries[2]])
    forged = entries[1].model_copy(update={"aliases": {"challenger": "9"}})
    with pytest.raises(ValueError, match="record 2 states"):
        check_log([entries[0], forged])
    rewritten = entries[1].model_copy(
        update={"changes": [AliasChange(alias="challenger", from_version="7", to_version="2")]}
    )
    with pytest.raises(ValueError, match="moves challenger from version 7, but the log had it at version 1"):
        check_log([entries[0], rewritten])


def test_log_keys_sort_in_log_order_and_refuse_unsafe_model_names():
    keys = [log_key("registry/alias-log", "flights-hgb", seq) for seq in (10, 9, 100)]
    assert sorted(keys) == [keys[1], keys[0], keys[2]]
    assert keys[1] == "registry/alias-log/flights-hgb/0000000009.json"
    assert seq_of_key(keys[2]) == 100
    with pytest.raises(AliasMoveError, match="cannot name an alias log"):
        log_key("registry/alias-log", "a/b", 1)
