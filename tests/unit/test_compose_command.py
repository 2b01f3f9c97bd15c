"""`reconcile import compose` as a whole (run_import): exit status, what is written where, the report.

No engine: the output is validated as `reconcile validate` would, in the same process.
"""

from __future__ import annotations

import io
import stat
from pathlib import Path

from reconciler.compose import run_import


def run(tmp_path: Path, text: str, env: dict[str, str] | None = None, monkeypatch=None, **options):
    (tmp_path / "compose.yml").write_text(text)
    stdout, stderr = io.StringIO(), io.StringIO()
    if monkeypatch is not None:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
    outcome = run_import([tmp_path / "compose.yml"], tmp_path / "out", "p", (), stdout, stderr, **options)
    return outcome, stdout.getvalue(), stderr.getvalue()


def test_wg_easy_sys_module_imports_validates_and_is_a_grant_to_review(tmp_path):
    """wg-easy's `cap_add: [NET_ADMIN, SYS_MODULE]` once failed as "do not validate"; now it is carried with
    allowPrivileged, validated, and the import exits 2 listing it under grants to review."""
    outcome, out, err = run(
        tmp_path, "services:\n  wg-easy:\n    image: ghcr.io/wg-easy/wg-easy\n    cap_add: [NET_ADMIN, SYS_MODULE]\n"
    )
    assert outcome.exit_code == 2, err
    assert "allowPrivileged: true" in (tmp_path / "out" / "container-p-wg-easy-1.yaml").read_text()
    assert err.startswith("Grants to review") and "services.wg-easy.cap_add[1]: grant: capability SYS_MODULE" in err
    assert "review the 1 grants" in out


def test_no_grants_imports_without_them(tmp_path):
    outcome, _, err = run(tmp_path, "services:\n  a:\n    image: x\n    privileged: true\n", grants=False)
    assert outcome.exit_code == 2
    assert "privileged" not in (tmp_path / "out" / "container-p-a-1.yaml").read_text()
    assert "--no-grants" in err


def test_secret_values_go_to_a_private_git_ignored_env_file(tmp_path, monkeypatch):
    """zammad's `POSTGRESQL_PASS: ${POSTGRES_PASS:-zammad}` with POSTGRES_PASS set: the value is in
    out/.secrets/<container>.env (0600), which .gitignore lists; no manifest or message holds it."""
    outcome, out, err = run(
        tmp_path,
        "services:\n  zammad:\n    image: x\n    environment:\n      POSTGRESQL_PASS: ${POSTGRES_PASS:-zammad}\n"
        "      MARKED: ${MINE}\n",
        env={"POSTGRES_PASS": "very-secret", "MINE": "mine-too"},
        monkeypatch=monkeypatch,
        secret_env=["MINE"],
    )
    assert outcome.exit_code == 0, err
    secret_file = tmp_path / "out" / ".secrets" / "p-zammad-1.env"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert "POSTGRESQL_PASS='very-secret'" in secret_file.read_text()
    assert "MARKED='mine-too'" in secret_file.read_text()
    assert "/.secrets/" in (tmp_path / "out" / ".gitignore").read_text().splitlines()
    for path in (tmp_path / "out").glob("*.yaml"):
        assert "very-secret" not in path.read_text() and "mine-too" not in path.read_text()
    assert "very-secret" not in out + err and ".secrets/p-zammad-1.env" in err
    # importing again replaces the secret file and keeps one .gitignore line
    outcome, _, err = run(tmp_path, "services:\n  zammad:\n    image: x\n")
    assert outcome.exit_code == 0, err
    assert not secret_file.exists()
    assert (tmp_path / "out" / ".gitignore").read_text().splitlines() == ["/.secrets/"]


def test_the_report_groups_lines_by_key_with_a_count_and_one_example(tmp_path):
    """Noise hid the real losses: twenty unmapped `expose` lines are one group line; --verbose lists them all.
    The grants come first, each on its own line."""
    services = "".join(f"  s{i}:\n    image: x\n    links: [root]\n" for i in range(20))
    text = "services:\n  root:\n    image: x\n    privileged: true\n" + services
    outcome, _, err = run(tmp_path, text)
    assert outcome.exit_code == 2
    lines = err.splitlines()
    assert lines[0].startswith("Grants to review") and "services.root.privileged: grant" in lines[1]
    grouped = [line for line in lines if line.startswith("  services.*.links (20), e.g. ")]
    assert len(grouped) == 1 and len(lines) < 10
    report = (tmp_path / "out" / "compose-import-report.yaml").read_text()
    assert "#   services.*.links (20), e.g. " in report
    _, _, err = run(tmp_path, text, verbose=True)
    assert sum(".links: not mapped: " in line for line in err.splitlines()) == 20


def test_secret_env_files_never_follow_a_link(tmp_path, monkeypatch):
    """out/.secrets as a link elsewhere: the import refuses to write secrets through it (exit 1)."""
    run(tmp_path, "services:\n  a:\n    image: x\n")  # an earlier import's files: left as they are
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / ".secrets").symlink_to(tmp_path / "elsewhere")
    outcome, _, err = run(
        tmp_path, "services:\n  a:\n    image: x\n    environment: [API_TOKEN]\n",
        env={"API_TOKEN": "t"}, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert outcome.exit_code == 1 and "not a directory of its own" in err
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert (tmp_path / "out" / "container-p-a-1.yaml").exists()


def test_imported_device_requests_and_mount_options_validate(tmp_path):
    """What the importer writes for gpus, noCopy and propagation passes the Container schema and checks."""
    (tmp_path / "d").mkdir()
    outcome, _, err = run(
        tmp_path,
        "services:\n  a:\n    image: x\n    gpus: [{driver: nvidia, device_ids: ['0'], capabilities: [gpu]}]\n"
        "    volumes: ['data:/a:nocopy', './d:/b:rslave']\n  b:\n    image: x\n    gpus: all\n"
        "volumes:\n  data: {}\n",
    )
    assert outcome.exit_code == 0, err
    text = (tmp_path / "out" / "container-p-a-1.yaml").read_text()
    assert "deviceIds:" in text and "noCopy: true" in text and "propagation: rslave" in text


def test_imported_one_shots_external_objects_and_mount_flags_validate(tmp_path):
    """What the importer writes for service_completed_successfully (the one-shot and every wait on it), external
    volumes and networks, SELinux and tmpfs exec flags, platform and blkio weight passes validation."""
    (tmp_path / "d").mkdir()
    outcome, _, err = run(
        tmp_path,
        "services:\n  init:\n    image: x\n    restart: on-failure\n    volumes: ['./d:/d:z', 'data:/data']\n"
        "    platform: linux/amd64\n    blkio_config: {weight: 500}\n"
        "  app:\n    image: x\n    tmpfs: ['/t:exec,size=1m']\n    networks: [edge]\n"
        "    depends_on: {init: {condition: service_completed_successfully}}\n"
        "  web:\n    image: x\n    depends_on: [init]\n"
        "volumes:\n  data: {external: true, name: shared-data}\nnetworks:\n  edge: {external: true}\n",
    )
    assert outcome.exit_code == 0, err
    assert "state: completed" in (tmp_path / "out" / "container-p-init-1.yaml").read_text()
    assert "external: true" in (tmp_path / "out" / "volume-shared-data.yaml").read_text()
    assert "external: true" in (tmp_path / "out" / "network-edge.yaml").read_text()
