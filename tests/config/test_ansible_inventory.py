"""`-i` with an Ansible inventory (INI and YAML): hosts, groups and connection variables mapped,
the rest named as ignored, bad files refused with file and line, all through the real CLI."""
from __future__ import annotations

import pytest

from helpers import run_cli
from fleet.config.ansible import AnsibleFormatError, expand_range, parse_ini

INI = """\
# the operator's Ansible inventory
mail.example.com ansible_host=192.0.2.10

[web]
www[01:03].example.com
db-a:2222 ansible_host=192.0.2.20 ansible_password="not copied"

[web:vars]
ansible_user=deploy
ansible_ssh_private_key_file=~/.ssh/web_ed25519
fleet_state_dir=~/.openclaw-work

[prod:children]
web

[all:vars]
ansible_user=root
ansible_become=yes
"""

YAML = """\
all:
  vars:
    ansible_user: root
  hosts:
    mail.example.com:
      ansible_host: 192.0.2.10
  children:
    webservers:
      hosts:
        foo.example.com:
          ansible_host: 192.0.2.30
          ansible_port: 2222
        bar.example.com:
      vars:
        ansible_user: deploy
        ansible_connection: ssh
    prod:
      children:
        webservers:
"""


def check(tmp_path, capsys, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return run_cli(["inventory", "check", "-i", str(path)], capsys)


def rows(out: str) -> dict[str, list[str]]:
    """host → its row's cells in `fleet inventory check`'s table."""
    table = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and "." in cells[0] and len(cells) >= 8:
            table[cells[0]] = cells
    return table


def test_ini_inventory_is_read_with_groups_and_connection_vars(tmp_path, capsys):
    code, out, err = check(tmp_path, capsys, "hosts.ini", INI)
    assert code == 0, err
    table = rows(out)
    assert list(table) == ["mail.example.com", "www01.example.com", "www02.example.com", "www03.example.com"]
    assert table["mail.example.com"][1:4] == ["192.0.2.10", "(ssh)", "root"]
    assert table["www02.example.com"][3] == "deploy"            # [web:vars] beats [all:vars]
    assert table["www02.example.com"][5] == "~/.openclaw-work"  # fleet_state_dir
    assert "db-a" in out and "192.0.2.20" in out and "2222" in out
    assert "prod" in out and "web" in out                       # groups kept, children included
    prod = next(line for line in out.splitlines() if line.strip().startswith("prod "))
    assert "db-a" in prod and "www01.example.com" in prod
    # One line names what was ignored, and no secret reaches the output.
    assert "ansible_become" in err and "ansible_password" in err and "ignored" in err
    assert "not copied" not in out + err


def test_yaml_inventory_is_read_with_nested_children(tmp_path, capsys):
    code, out, err = check(tmp_path, capsys, "hosts.yml", YAML)
    assert code == 0, err
    table = rows(out)
    assert table["foo.example.com"][1:4] == ["192.0.2.30", "2222", "deploy"]
    assert table["mail.example.com"][3] == "root"
    prod = next(line for line in out.splitlines() if line.strip().startswith("prod "))
    assert "foo.example.com" in prod and "bar.example.com" in prod
    assert "ansible_connection" not in err            # "ssh" is what fleet does anyway: nothing ignored
    assert "OK: 3 hosts" in out


def test_a_broken_yaml_inventory_names_file_and_line(tmp_path, capsys):
    code, out, err = check(tmp_path, capsys, "hosts.yml", "all:\n  hosts:\n    a: [unclosed\n")
    assert code == 2
    assert "hosts.yml" in err and "line" in err and "YAML" in err


def test_a_bad_ansible_value_is_named_like_a_toml_one(tmp_path, capsys):
    code, out, err = check(tmp_path, capsys, "hosts.ini", "[web]\npc-a ansible_port=70000\n")
    assert code == 2
    assert "hosts.ini" in err and "hosts.pc-a.port" in err and "70000" in err


def test_ansible_file_without_suffix_is_recognised(tmp_path, capsys):
    code, out, err = check(tmp_path, capsys, "hosts", "[web]\npc-a ansible_host=192.0.2.5\n")
    assert code == 0, err
    assert "192.0.2.5" in out


def test_host_ranges_and_bad_lines():
    assert expand_range("web[01:03].lan") == ["web01.lan", "web02.lan", "web03.lan"]
    assert expand_range("db-[a:c]") == ["db-a", "db-b", "db-c"]
    assert expand_range("n[1:5:2]") == ["n1", "n3", "n5"]
    with pytest.raises(AnsibleFormatError, match="line 2"):
        parse_ini("[web]\npc-a ansible_host\n")
