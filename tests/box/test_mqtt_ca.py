"""--mqtt-ca FILE (`mqtt_ca` in a box file): a private CA for mqtts://, against a real mosquitto TLS
listener whose certificate that CA signed (made with the openssl CLI); a bad CA file is one line, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.box.test_events import tls_broker, wait_for
from tests.runtime.box_files import colour_onnx

CUP = Path(__file__).resolve().parents[2] / "samples" / "videos" / "cup.mp4"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed")


@needs_openssl
def test_mqtts_trusts_the_broker_by_the_ca_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecnn.runtime.box.wiring import EventOptions, event_sinks
    from edgecnn.runtime.live.events import Event

    with tls_broker(tmp_path) as (ca, port, received):
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the system store does not know this CA
        options = EventOptions(mqtt=f"mqtts://127.0.0.1:{port}", mqtt_ca=ca)
        options.check()
        event = Event("shelf", "red", None, 0.9, None, "2026-12-07T05:00:00.000+00:00", 3)
        wiring = event_sinks(options, ["shelf"], ["red"])
        wiring.tracker.sinks[0].event(event)
        wait_for(received, 1, seconds=15)
        wiring.close()
    assert [json.loads(p) for p in received] == [event.to_json()]
    assert wiring.counts()["mqtt_sent"] == 2  # the event and the state


def bad_cas(folder: Path) -> dict[str, tuple[str, str]]:
    """Each bad --mqtt-ca: (file, URL) and what its one-line error says."""
    (folder / "notes.txt").write_text("not a certificate\n")
    (folder / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMII=\n-----END PRIVATE KEY-----\n")
    (folder / "certs").mkdir()
    return {"missing": (str(folder / "missing.pem"), "mqtts://127.0.0.1:8883", "cannot read it"),
            "a folder": (str(folder / "certs"), "mqtts://127.0.0.1:8883", "cannot read it"),
            "not PEM": (str(folder / "notes.txt"), "mqtts://127.0.0.1:8883", "holds no PEM CA certificate"),
            "no certificate": (str(folder / "key.pem"), "mqtts://127.0.0.1:8883", "no PEM CA certificate"),
            "no TLS": (str(folder / "notes.txt"), "mqtt://127.0.0.1:1883", "goes with an mqtts:// broker")}


def one_line_error(result: object) -> str:
    """The run's error line (`run` says which box it starts first), after checking it is the only one."""
    output = result.output.strip()  # type: ignore[attr-defined]
    assert result.exit_code == 2 and "Traceback" not in output, output  # type: ignore[attr-defined]
    lines = output.splitlines()
    assert lines[-1].startswith("error: ") and sum("error" in line for line in lines) == 1, output
    return lines[-1]


@pytest.mark.parametrize("case", ["missing", "a folder", "not PEM", "no certificate", "no TLS"])
def test_a_bad_mqtt_ca_is_refused_at_the_start_by_camera_and_run(tmp_path: Path, case: str) -> None:
    ca, url, says = bad_cas(tmp_path)[case]
    model = colour_onnx(tmp_path / "model.onnx")
    runner = CliRunner()
    camera = runner.invoke(app, ["camera", str(model), "--source", str(CUP), "--headless", "--mqtt", url,
                                 "--mqtt-ca", ca])
    assert says in one_line_error(camera)
    box = tmp_path / "box.toml"
    box.write_text(f'model = "{model}"\nheadless = true\n[sinks]\nmqtt = "{url}"\nmqtt_ca = "{ca}"\n'
                   f'[[camera]]\nsource = "{CUP}"\n')
    assert says in one_line_error(runner.invoke(app, ["run", str(box)]))


def test_mqtt_ca_without_mqtt_is_refused(tmp_path: Path) -> None:
    from edgecnn.runtime.box.wiring import EventOptions
    from edgecnn.runtime.core.errors import EdgecnnError

    with pytest.raises(EdgecnnError, match="--mqtt-ca .* goes with --mqtt mqtts://"):
        EventOptions(mqtt_ca=tmp_path / "ca.pem").check()
