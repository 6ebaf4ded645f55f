"""README keeps exactly two set-up commands, and CI runs the test one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_two_setup_commands_and_ci_runs_the_test_one() -> None:
    commands = setup_commands()
    assert len(commands) == 2
    serve, test = commands
    assert "edgewatch models install --default" in serve and serve.endswith("edgewatch serve")
    assert "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_configuration_reference_is_the_embedded_defaults() -> None:
    """README's configuration block lists every key of its sections with its real default."""
    import yaml

    from edgewatch.daemon.config import Settings

    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = yaml.safe_load(re.search(r"```yaml\n(.+?)\n```", section, re.S).group(1))
    defaults = Settings().model_dump(mode="json")
    for key, value in documented.items():
        if key in ("data_dir", "cache_dir"):  # machine-dependent; the comments say how they are chosen
            continue
        assert value == defaults[key], f"README's {key!r} is not the default"
