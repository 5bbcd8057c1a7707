"""--limit: names, groups, globs, `all`, `:` lists, &intersections, !exclusions and @retry files."""
from __future__ import annotations

import pytest

from fleet.errors import ExitStatus, UsageError
from fleet.config.inventory import load_inventory
from fleet.config.selection import read_retry_file, select_hosts, write_retry_file

INVENTORY = """
[hosts.pc-a]
groups = ["workstations"]
[hosts.pc-b]
groups = ["workstations"]
[hosts.t440]
groups = ["servers"]
[hosts.t441]
groups = ["servers"]
[hosts.control]
connection = "local"
[groups.lab]
hosts = ["t441", "pc-b"]
"""


@pytest.fixture
def inv(tmp_path):
    path = tmp_path / "inventory.toml"
    path.write_text(INVENTORY)
    return load_inventory(path)


def names(inv, limit):
    return [h.name for h in select_hosts(inv, limit)]


def test_no_limit_selects_every_host_in_file_order(inv):
    assert names(inv, None) == ["pc-a", "pc-b", "t440", "t441", "control"]


@pytest.mark.parametrize("limit, expected", [
    ("t440", ["t440"]),
    ("control,pc-a", ["pc-a", "control"]),                 # inventory order, not argument order
    ("servers", ["t440", "t441"]),
    ("lab", ["pc-b", "t441"]),
    ("t44*", ["t440", "t441"]),
    ("work*", ["pc-a", "pc-b"]),                            # a glob over group names expands them
    ("pc-?", ["pc-a", "pc-b"]),
    ("!servers", ["pc-a", "pc-b", "control"]),              # only exclusions: start from every host
    ("servers,lab,!t441", ["pc-b", "t440"]),
    ("*,!control", ["pc-a", "pc-b", "t440", "t441"]),
    (" t440 , ,pc-a ", ["pc-a", "t440"]),
    # Ansible's syntax: `:` separates like `,`, `all` is every host, `&` intersects, `!` excludes.
    ("all", ["pc-a", "pc-b", "t440", "t441", "control"]),
    ("t440:pc-a", ["pc-a", "t440"]),
    ("all:!control", ["pc-a", "pc-b", "t440", "t441"]),
    ("workstations:&lab", ["pc-b"]),
    ("servers:&lab", ["t441"]),
    ("servers,workstations:&lab:!pc-b", ["t441"]),
    ("&lab", ["pc-b", "t441"]),                             # only an intersection: every host, narrowed
])
def test_names_groups_globs_and_exclusions(inv, limit, expected):
    assert names(inv, limit) == expected


def test_unknown_names_are_a_usage_error_naming_them_and_the_valid_ones(inv):
    with pytest.raises(UsageError) as exc_info:
        select_hosts(inv, "t440,t4400,nothing*,!pc-z")
    message = str(exc_info.value)
    assert exc_info.value.exit_status == ExitStatus.USAGE
    assert '"t4400" (did you mean "t440"?)' in message
    assert '"nothing*"' in message and '"!pc-z"' in message
    assert "hosts: pc-a, pc-b, t440, t441, control" in message
    assert "groups: workstations, servers, lab" in message


def test_an_empty_selection_is_a_usage_error(inv):
    with pytest.raises(UsageError, match="selects no host"):
        select_hosts(inv, "servers,!t440,!t441")
    with pytest.raises(UsageError, match="names no host"):
        select_hosts(inv, " , ")
    with pytest.raises(UsageError, match="selects no host"):
        select_hosts(inv, "servers:&workstations")


def test_a_colon_list_blames_only_the_unknown_term(inv):
    with pytest.raises(UsageError) as exc_info:
        select_hosts(inv, "pc-a:t4400")
    first_line = str(exc_info.value).splitlines()[0]
    assert first_line == '--limit: no host or group matches "t4400" (did you mean "t440"?)'


def test_retry_file_round_trip(inv, tmp_path):
    retry = write_retry_file(tmp_path / "retry" / "failed.txt", ["t441", "pc-a"], comment="run 20261121T101500Z\nfailed hosts")
    text = retry.read_text()
    assert text.startswith("# run 20261121T101500Z\n# failed hosts\n")
    assert read_retry_file(retry) == ["t441", "pc-a"]
    assert names(inv, f"@{retry}") == ["pc-a", "t441"]
    assert names(inv, f"servers,!@{retry}") == ["t440"]
    assert not list(retry.parent.glob(".*.tmp"))


def test_retry_file_comments_blank_lines_and_unknown_names(inv, tmp_path):
    retry = tmp_path / "retry.txt"
    retry.write_text("# failed\n\nt440   # wrong host key\npc-gone\n")
    with pytest.raises(UsageError, match='"pc-gone"'):
        select_hosts(inv, f"@{retry}")
    with pytest.raises(UsageError, match="file not found"):
        select_hosts(inv, f"@{tmp_path / 'missing.txt'}")


def test_a_retry_file_may_name_itself_without_looping(inv, tmp_path):
    retry = tmp_path / "self.txt"
    retry.write_text(f"t440\n@{retry}\n")
    assert names(inv, f"@{retry}") == ["t440"]



def test_an_unknown_limit_stops_scan_through_the_cli(inv, capsys, tmp_path, monkeypatch):
    from fleet.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "-i", str(inv.path), "--limit", "servers,t4400"])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert 'no host or group matches "t4400" (did you mean "t440"?)' in err
