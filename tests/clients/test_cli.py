"""The ``torchfn`` command (installed with the client by the dev requirements) against the real
server process, run as a user runs it: a subprocess, files and stdin in, JSON or a table out,
and its exit status."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchfn_client.cli import EXIT_USAGE, main

from tests.support.server_process import RunningServer, free_port, running_server

pytestmark = pytest.mark.server

TORCHFN = Path(sys.executable).parent / "torchfn"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    assert TORCHFN.exists(), "the torchfn command is missing: scripts/install --dev installs it"
    with running_server() as running:
        yield running


def torchfn(*args: str, url: str | None, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``torchfn ARGS``, the server named by TORCHFN_URL (as a user would set it)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TORCHFN_")}
    if url is not None:
        env["TORCHFN_URL"] = url
    return subprocess.run(
        [str(TORCHFN), *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def output_json(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_functions_and_function(server: RunningServer) -> None:
    losses = output_json(torchfn("functions", "--kind", "loss", url=server.url))
    assert losses
    assert {entry["kind"] for entry in losses} == {"loss"}
    assert {"name": "mse_loss", "kind": "loss", "aliases": ["MSELoss"], "summary": "Mean squared error."} in losses
    everything = output_json(torchfn("functions", url=server.url))
    assert len(everything) > len(losses)
    described = output_json(torchfn("function", "LeakyReLU", url=server.url))
    assert described["name"] == "leaky_relu"
    assert [p["name"] for p in described["params"]] == ["negative_slope"]


def test_activate_from_stdin_with_params_and_grad(server: RunningServer) -> None:
    run = torchfn(
        "activate", "leaky_relu", "--input", "-", "--param", "negative_slope=0.1", "--grad",
        url=server.url, stdin="[[-1.5, 0.2], [3.0, -0.1]]",
    )  # fmt: skip
    assert output_json(run) == {
        "function": "leaky_relu",
        "dtype": "float32",
        "shape": [2, 2],
        "output": [[-0.15, 0.2], [3.0, -0.010000001]],  # float32's shortest decimals, as the service writes them
        "grad": [[0.1, 1.0], [1.0, 0.1]],
    }


@pytest.mark.parametrize(
    ("dtype", "out"), [("float32", "npz"), ("float64", "npz"), ("float16", "json"), ("bfloat16", "json")]
)
def test_activate_in_every_dtype_to_a_file(
    server: RunningServer, device: torch.device, tmp_path: Path, dtype: str, out: str
) -> None:
    x = np.linspace(-3, 3, 2000).reshape(40, 50)
    np.save(tmp_path / "x.npy", x)
    run = torchfn(
        "activate", "gelu", "--input", "x.npy", "--dtype", dtype, "--grad", "--out", f"result.{out}", "--json",
        url=server.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == "", "with --out and piped, nothing is printed"
    leaf = torch.from_numpy(x).to(device, getattr(torch, dtype)).requires_grad_(True)
    expected = F.gelu(leaf)
    (grad,) = torch.autograd.grad(expected, leaf, torch.ones_like(expected))
    expected, grad = expected.detach().cpu(), grad.cpu()
    if out == "npz":
        with np.load(tmp_path / "result.npz") as saved:
            output, saved_grad = saved["output"], saved["grad"]
        assert output.dtype == np.dtype(dtype)
        assert saved_grad.dtype == np.dtype(dtype)
    else:  # JSON numbers are the shortest decimals that read back as the same value of the dtype
        written = json.loads((tmp_path / "result.json").read_text())
        assert written["dtype"] == dtype
        assert written["shape"] == [40, 50]
        numpy_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
        output, saved_grad = (
            np.asarray(written[key], dtype=np.float64).astype(numpy_dtype) for key in ("output", "grad")
        )
    assert np.array_equal(output.astype(np.float64), expected.double().numpy())
    assert np.array_equal(saved_grad.astype(np.float64), grad.double().numpy())


def test_loss_with_files_of_every_kind(server: RunningServer, device: torch.device, tmp_path: Path) -> None:
    np.savez(tmp_path / "pair.npz", input=np.array([[2.0, 0.5, -1.0]], dtype=np.float32), target=np.array([0]))
    (tmp_path / "weight.json").write_text("[1.0, 2.0, 0.5]")
    run = torchfn(
        "loss", "cross_entropy", "--input", "pair.npz", "--target", "pair.npz", "--param", "label_smoothing=0.1",
        "--param", "weight=@weight.json", "--grad", "--out", "loss.json",
        url=server.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    written = json.loads((tmp_path / "loss.json").read_text())
    logits = torch.tensor([[2.0, 0.5, -1.0]], device=device, requires_grad=True)
    weight = torch.tensor([1.0, 2.0, 0.5], device=device)
    expected = F.cross_entropy(logits, torch.tensor([0], device=device), weight=weight, label_smoothing=0.1)
    (grad,) = torch.autograd.grad(expected, logits)
    grad = grad.cpu()
    assert written["function"] == "cross_entropy"
    assert written["shape"] == []
    assert np.float32(written["loss"]) == expected.item()
    assert np.array_equal(np.asarray(written["grad"]["input"], dtype=np.float32), grad.numpy())
    np.save(tmp_path / "var.npy", np.array([0.5, 2.0]))
    nll = output_json(
        torchfn(
            "loss", "gaussian_nll_loss", "--input", "-", "--target", "var.npy", "--tensor", "var=var.npy",
            url=server.url, cwd=tmp_path, stdin='{"shape": [2], "dtype": "float64", "data": [1.0, 3.0]}',
        )
    )  # fmt: skip
    reference = F.gaussian_nll_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.5, 2.0]), torch.tensor([0.5, 2.0]))
    assert nll["dtype"] == "float64"  # the dtype of the typed arrays sent
    assert nll["loss"] == pytest.approx(reference.item(), rel=1e-6)


def _prelu(z: torch.Tensor) -> torch.Tensor:
    return F.prelu(z, torch.tensor([0.3], device=z.device))


def _leaky_relu(z: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(z, negative_slope=0.2)


@pytest.mark.parametrize(
    ("activation", "param", "reference"),
    [("leaky_relu", "negative_slope=0.2", _leaky_relu), ("PReLU", "weight=@weight.json", _prelu)],
)
def test_loss_chained_after_an_activation_with_its_params(
    server: RunningServer,
    device: torch.device,
    tmp_path: Path,
    activation: str,
    param: str,
    reference: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    x = np.array([[-2.0, -0.5, 0.25, 1.5]], dtype=np.float32)
    target = np.array([[0.5, -1.0, 0.0, 2.0]], dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "target.npy", target)
    (tmp_path / "weight.json").write_text("[0.3]")
    chained = output_json(
        torchfn(
            "loss", "mse_loss", "--input", "x.npy", "--target", "target.npy", "--param", "reduction=sum",
            "--activation", activation, "--activation-param", param, "--grad",
            url=server.url, cwd=tmp_path,
        )
    )  # fmt: skip
    leaf = torch.from_numpy(x).to(device).requires_grad_(True)
    expected = F.mse_loss(reference(leaf), torch.from_numpy(target).to(device), reduction="sum")
    (grad,) = torch.autograd.grad(expected, leaf)
    assert np.float32(chained["loss"]) == expected.item()
    assert np.array_equal(np.asarray(chained["grad"]["input"], dtype=np.float32), grad.cpu().numpy())


def test_a_table_on_a_terminal(server: RunningServer) -> None:
    leader, follower = pty.openpty()
    env = {**os.environ, "TORCHFN_URL": server.url}
    with subprocess.Popen([str(TORCHFN), "function", "cross_entropy"], stdout=follower, env=env) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closes when the command exits
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(60) == 0
    os.close(leader)
    text = b"".join(chunks).decode()
    assert text.startswith("FIELD")
    assert "PARAMETER" in text
    assert "label_smoothing" in text
    assert "<= 1.0" in text


def test_exit_status_and_the_servers_message(server: RunningServer, tmp_path: Path) -> None:
    refused = torchfn(
        "activate", "leaky_relu", "--input", "-", "--param", "negative_slope=steep", url=server.url, stdin="[1.0]"
    )
    assert refused.returncode == 4
    assert refused.stdout == ""
    assert "422 invalid_request" in refused.stderr
    assert "body.params.negative_slope: must be a number" in refused.stderr
    unknown = torchfn("function", "no_such_function", url=server.url)
    assert unknown.returncode == 4
    assert "404" in unknown.stderr
    unreachable = torchfn("functions", url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 5
    assert "Connection refused" in unreachable.stderr
    missing_input = torchfn("activate", "relu", url=server.url)
    assert missing_input.returncode == 2
    assert "--input" in missing_input.stderr
    missing_file = torchfn("activate", "relu", "--input", "missing.npy", url=server.url, cwd=tmp_path)
    assert missing_file.returncode == 2
    assert "cannot read missing.npy" in missing_file.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["activate", "relu", "--input", "x.txt"], "tensor files are .npy, .npz, .json"),
        (["activate", "relu", "--input", "-", "--param", "novalue"], "expected K=V"),
        (["activate", "relu", "--input", "-", "--grad-output", "-"], "only one tensor can be read from stdin"),
        (["activate", "relu", "--input", "-", "--grad", "--out", "result.npy"], "an .npy file holds one array"),
        (["loss", "mse_loss", "--input", "-", "--tensor", "target"], "expected NAME=FILE"),
        (["loss", "mse_loss", "--input", "-", "--activation-param", "negative_slope=0.1"], "needs --activation NAME"),
        (["loss", "mse_loss", "--input", "-", "--activation", "elu", "--activation-param", "alpha"], "expected K=V"),
    ],
)
def test_usage_errors_exit_2(
    server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    """The same command in this process (each run of the real one costs a second of imports)."""
    (tmp_path / "x.txt").write_text("1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("[1.0]"))
    assert main(["--url", server.url, *args]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_url_option_wins_over_the_environment(server: RunningServer) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    run = torchfn("functions", "--kind", "activation", "--url", server.url, url=nowhere)
    assert run.returncode == 0, run.stderr
    assert {entry["kind"] for entry in json.loads(run.stdout)} == {"activation"}
