"""The pages a person opens, in a real browser: Debian's headless Chromium (``scripts/install-browser``)
driven by Playwright, against the real server process. Every request the browser makes is
recorded and must stay on the server's origin (anything else is aborted, so nothing leaves
this machine); no console errors; the explorer's plotted numbers are compared with torch
in-process. Screenshots go to ``artifacts/screenshots/``."""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

pytest.importorskip("playwright", reason="the browser tests need Playwright (requirements-dev.txt)")

import torch
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Route, sync_playwright
from torch.nn import functional as F

from tests.support.paths import ROOT
from tests.support.plugin_modules import TUTORIAL, write_module
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@dataclass
class PluginServer:
    running: RunningServer
    module: ModuleType
    """The same plugin module, imported in this process: the reference numbers."""


@pytest.fixture(scope="module")
def plugin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginServer]:
    """The server with the tutorial's plugins (``tests/support/plugin_modules.py``: ``TUTORIAL``)."""
    directory = tmp_path_factory.mktemp("plugins")
    with pytest.MonkeyPatch.context() as patch:
        name = write_module(directory, TUTORIAL, patch)
        module = importlib.import_module(name)
    entries = ",".join(f"{name}:{cls}" for cls in ("ScaledSwish", "HuberishLoss", "PickyLoss"))
    path = os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with running_server({"TORCHFN_PLUGINS": entries, "PYTHONPATH": path}) as running:
        yield PluginServer(running, module)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run scripts/install-browser")
    launched = playwright.chromium.launch(executable_path=chromium)
    yield launched
    launched.close()


@dataclass
class Visit:
    """One page in a fresh browser context, with every request and console error it caused."""

    page: Page
    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def off_origin(self) -> list[str]:
        """Requested URLs not on the server's origin (``blob:`` URLs carry their page's origin)."""
        outside = []
        for url in self.requests:
            inner = url.removeprefix("blob:")
            parts = urlsplit(inner)
            if parts.scheme == "data":
                continue
            if f"{parts.scheme}://{parts.netloc}" != self.origin:
                outside.append(url)
        return outside

    def check_clean(self) -> None:
        assert self.requests, "the page made no request at all"
        assert self.off_origin() == []
        assert self.errors == []

    def screenshot(self, name: str, capsys: pytest.CaptureFixture[str], full_page: bool = False) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        with capsys.disabled():
            print(f"\nscreenshot: {path}")
        return path

    def evaluate(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def wait_until(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll a JavaScript expression until it is truthy (the page's CSP forbids
        ``wait_for_function``, which evaluates strings inside the page)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.page.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            self.page.wait_for_timeout(50)


@pytest.fixture
def visit(browser: Browser, server: RunningServer) -> Iterator[Callable[..., Visit]]:
    contexts = []

    def open_page(path: str, viewport: dict[str, int] = DESKTOP, at: RunningServer = server) -> Visit:
        context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        seen = Visit(page, at.url)

        def on_request(request: Request) -> None:
            seen.requests.append(request.url)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                seen.errors.append(message.text)

        def keep_on_origin(route: Route) -> None:
            if route.request.url.startswith(at.url + "/"):
                route.continue_()
            else:
                route.abort()

        page.on("request", on_request)
        page.on("console", on_console)
        page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
        context.route("**/*", keep_on_origin)
        page.goto(at.url + path)
        return seen

    yield open_page
    for context in contexts:
        context.close()


def assert_strict_policy(url: str) -> None:
    """The page comes with a Content-Security-Policy that keeps it on its origin and runs no
    script but its own files and the inline ones it names by hash (a violation would show as a
    console error, which ``check_clean`` refuses)."""
    reply = httpx.get(url, timeout=10)
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in reply.headers["content-security-policy"].split("; ")
    }
    assert policy["default-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert all(source == "'self'" or source.startswith("'sha256-") for source in policy["script-src"])
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_swagger_ui_lists_every_operation_with_no_network(
    visit: Callable[..., Visit], server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_strict_policy(f"{server.url}/docs")
    docs = visit("/docs")
    docs.page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = docs.page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/activate", "/loss", "/functions", "/functions/{name}", "/v2/models/{name}/infer"} <= {
        p.strip() for p in paths
    }
    docs.page.get_by_text("POST/activate", exact=False).first.click()
    docs.page.wait_for_selector("text=Try it out", timeout=10_000)
    docs.screenshot("docs-swagger-ui", capsys)
    docs.check_clean()


def test_redoc_renders_the_operations_with_no_network(
    visit: Callable[..., Visit], server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_strict_policy(f"{server.url}/redoc")
    redoc = visit("/redoc")
    redoc.page.wait_for_selector("h1", timeout=20_000)
    redoc.page.wait_for_selector("h2:has-text('Apply an activation function')", timeout=20_000)
    menu = redoc.page.locator("[role=menuitem]").all_inner_texts()
    assert any("Compute a loss function" in item for item in menu)
    redoc.screenshot("docs-redoc", capsys)
    redoc.check_clean()


def activation_reference(name: str, x: torch.Tensor, params: dict[str, Any]) -> tuple[list[float], list[float]]:
    """What torch computes in this process: f(x) and df/dx (the vector-Jacobian product with ones)."""
    x = x.clone().requires_grad_(True)
    y = getattr(F, name)(x, **params)
    (dy,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return y.tolist(), dy.tolist()


def assert_curve(curve: dict[str, Any], expected_y: list[float], expected_dy: list[float]) -> None:
    assert curve["error"] is None
    for plotted, expected in ((curve["y"], expected_y), (curve["dy"], expected_dy)):
        got = torch.tensor(plotted, dtype=torch.float64)  # integral values arrive as Python ints
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-7)


def curve_of(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in data["curves"] if c["function"] == name)
    return found


def test_explorer_plots_activations_as_torch_computes_them(
    visit: Callable[..., Visit], capsys: pytest.CaptureFixture[str]
) -> None:
    explorer = visit("/explore")
    explorer.wait_until("document.documentElement.dataset.redraws === '1'")
    data = explorer.evaluate("window.explorer.lastData")
    x = torch.tensor(data["x"], dtype=torch.float32)
    assert len(data["x"]) == 401
    assert data["x"][0] == -5
    assert data["x"][-1] == 5
    assert [c["function"] for c in data["curves"]] == ["sigmoid", "gelu", "leaky_relu"]
    assert_curve(curve_of(data, "sigmoid"), *activation_reference("sigmoid", x, {}))
    assert_curve(curve_of(data, "gelu"), *activation_reference("gelu", x, {}))
    assert_curve(curve_of(data, "leaky_relu"), *activation_reference("leaky_relu", x, {"negative_slope": 0.01}))

    # saturation: sigmoid's shaded stretches are where torch's |gradient| is below the threshold
    _, sigmoid_dy = activation_reference("sigmoid", x, {})
    flat = [abs(g) < data["threshold"] for g in sigmoid_dy]
    shaded = [any(a <= v <= b for a, b in curve_of(data, "sigmoid")["saturated"]) for v in data["x"]]
    assert shaded == flat
    assert flat[0]
    assert flat[-1]
    assert not flat[200]

    # a parameter changed from the keyboard redraws with torch's values for it
    slope = explorer.page.locator("fieldset[data-function=leaky_relu] input[name=negative_slope]")
    slope.fill("0.2")
    slope.press("Tab")
    explorer.wait_until("document.documentElement.dataset.redraws === '2'")
    data = explorer.evaluate("window.explorer.lastData")
    leaky = curve_of(data, "leaky_relu")
    assert leaky["request"]["params"] == {"negative_slope": 0.2}
    assert_curve(leaky, *activation_reference("leaky_relu", x, {"negative_slope": 0.2}))

    approximate = explorer.page.get_by_label("approximate")
    approximate.select_option("tanh")
    explorer.wait_until("document.documentElement.dataset.redraws === '3'")
    gelu = curve_of(explorer.evaluate("window.explorer.lastData"), "gelu")
    assert_curve(gelu, *activation_reference("gelu", x, {"approximate": "tanh"}))

    # overlay one more function, chosen from the list
    explorer.page.locator("#function-list input[value=softplus]").check()
    explorer.wait_until("document.documentElement.dataset.redraws === '4'")
    data = explorer.evaluate("window.explorer.lastData")
    assert [c["function"] for c in data["curves"]] == ["sigmoid", "gelu", "leaky_relu", "softplus"]
    assert_curve(curve_of(data, "softplus"), *activation_reference("softplus", x, {"beta": 1.0, "threshold": 20.0}))

    # the request shown as Python is the one sent, and running it gives the plotted numbers
    explorer.page.select_option("#request-for", "softplus")
    snippet = explorer.page.locator("#python-code").inner_text()
    printed = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=30, check=True)
    reply = ast.literal_eval(printed.stdout)
    assert reply["output"] == curve_of(data, "softplus")["y"]
    curl = explorer.page.locator("#curl-code").inner_text()
    assert json.loads(curl.split(" -d '", 1)[1].removesuffix("'")) == curve_of(data, "softplus")["request"]

    explorer.screenshot("explore-activations", capsys, full_page=True)
    explorer.check_clean()


def test_explorer_overlays_losses_as_torch_computes_them(
    visit: Callable[..., Visit], capsys: pytest.CaptureFixture[str]
) -> None:
    explorer = visit("/explore")
    explorer.wait_until("document.documentElement.dataset.redraws === '1'")
    # to the losses from the keyboard: arrow keys move between the radio buttons
    explorer.page.get_by_label("Activations").focus()
    explorer.page.keyboard.press("ArrowRight")
    explorer.wait_until("document.documentElement.dataset.redraws === '2'")
    data = explorer.evaluate("window.explorer.lastData")
    assert data["mode"] == "loss"
    assert [c["function"] for c in data["curves"]] == ["mse_loss", "l1_loss", "huber_loss", "cross_entropy"]
    x = torch.tensor(data["x"], dtype=torch.float32)

    for name in ("mse_loss", "l1_loss", "huber_loss"):
        prediction = x.clone().requires_grad_(True)
        loss = getattr(F, name)(prediction, torch.ones_like(x), reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), prediction)
        assert_curve(curve_of(data, name), loss.tolist(), grad.tolist())

    # cross-entropy's label smoothing (bounded above only, as torch bounds it: a number field),
    # typed from the keyboard
    field = explorer.page.locator("fieldset[data-function=cross_entropy] input[name=label_smoothing]")
    field.focus()
    explorer.page.keyboard.press("Control+A")
    explorer.page.keyboard.type("0.1")
    explorer.page.keyboard.press("Tab")
    explorer.wait_until(
        "(window.explorer.lastData.curves.find(c => c.function === 'cross_entropy').request.params || {})"
        ".label_smoothing === 0.1"
    )
    explorer.wait_until("document.documentElement.dataset.state === 'ready'")
    data = explorer.evaluate("window.explorer.lastData")
    cross_entropy = curve_of(data, "cross_entropy")
    assert cross_entropy["request"]["params"] == {"ignore_index": -100, "label_smoothing": 0.1, "reduction": "none"}
    logits = torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], dim=1).requires_grad_(True)
    target = torch.zeros(len(x), dtype=torch.long)
    loss = F.cross_entropy(logits, target, label_smoothing=0.1, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert_curve(cross_entropy, loss.tolist(), grad[:, 0].tolist())

    explorer.screenshot("explore-losses", capsys, full_page=True)
    explorer.check_clean()


def test_explorer_fits_a_phone(visit: Callable[..., Visit], capsys: pytest.CaptureFixture[str]) -> None:
    explorer = visit("/explore", viewport=PHONE)
    explorer.wait_until("document.documentElement.dataset.redraws === '1'")
    assert explorer.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    chart_width = explorer.evaluate("document.querySelector('#value-chart canvas').getBoundingClientRect().width")
    assert 200 <= chart_width <= PHONE["width"]
    explorer.screenshot("explore-phone", capsys)
    explorer.check_clean()


def catalogue(server: RunningServer, kind: str) -> list[dict[str, Any]]:
    functions: list[dict[str, Any]] = httpx.get(f"{server.url}/functions", params={"kind": kind}).json()["functions"]
    return functions


def as_tensor(value: Any, integer: bool) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.int64 if integer else torch.float32)


ACTIVATION_MODULES: dict[str, Callable[..., torch.Tensor]] = {"softmax2d": torch.nn.Softmax2d()}


def test_explorer_plots_every_activation_as_torch_computes_it(
    visit: Callable[..., Visit], server: RunningServer
) -> None:
    names = [f["name"] for f in catalogue(server, "activation")]
    explorer = visit("/explore#activations=" + ",".join(names))
    explorer.wait_until("document.documentElement.dataset.redraws === '1'")
    data = explorer.evaluate("window.explorer.lastData")
    assert [c["function"] for c in data["curves"]] == names
    x = torch.tensor(data["x"], dtype=torch.float32)
    for curve in data["curves"]:
        request = curve["request"]
        params = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in request.get("params", {}).items()}
        given = torch.tensor(request["input"], dtype=torch.float32).requires_grad_(True)
        function = getattr(F, curve["function"], None) or ACTIVATION_MODULES[curve["function"]]
        output = function(given, **params)
        weights = torch.tensor(request["grad_output"]) if "grad_output" in request else torch.ones_like(output)
        (grad,) = torch.autograd.grad(output, given, weights)
        if given.dim() == 1:  # elementwise: the input is the grid itself
            assert torch.equal(given.detach(), x)
            expected = output.tolist(), grad.tolist()
        elif curve["function"] == "glu":  # [1, x]: the gate moves
            expected = output[:, 0].tolist(), grad[:, 1].tolist()
        elif curve["function"] == "softmax2d":  # channel 0 of (2, N, 1)
            expected = output[0, :, 0].tolist(), grad[0, :, 0].tolist()
        else:  # [x, 0] along dim -1
            expected = output[:, 0].tolist(), grad[:, 0].tolist()
        assert_curve(curve, *expected)


def test_explorer_plots_every_sweepable_loss_as_torch_computes_it(
    visit: Callable[..., Visit], server: RunningServer
) -> None:
    entries = {f["name"]: f for f in catalogue(server, "loss")}
    explorer = visit("/explore#losses=" + ",".join(entries))
    explorer.wait_until("document.documentElement.dataset.redraws === '1'")
    unplotted = explorer.evaluate("[...document.querySelectorAll('#function-list input:disabled')].map(i => i.value)")
    assert set(unplotted) == {
        "ctc_loss",
        "cosine_embedding_loss",
        "triplet_margin_loss",
        "triplet_margin_with_distance_loss",
    }
    data = explorer.evaluate("window.explorer.lastData")
    assert [c["function"] for c in data["curves"]] == [name for name in entries if name not in unplotted]
    for curve in data["curves"]:
        entry, request = entries[curve["function"]], curve["request"]
        tensors = {**{k: request[k] for k in ("input", "target") if k in request}, **request.get("inputs", {})}
        kinds = {t["name"]: t["element_type"] for t in entry["tensors"]}
        given = {
            name: as_tensor(value, kinds[name] == "integer" or (kinds[name].startswith("integer") and name == "target"))
            for name, value in tensors.items()
        }
        moving = "input1" if "input1" in given else "input"
        given[moving].requires_grad_(True)
        arguments = [given[t["name"]] for t in entry["tensors"]]
        loss = getattr(F, curve["function"])(*arguments, **request["params"])
        (grad,) = torch.autograd.grad(loss.sum(), given[moving])
        read = grad[:, 0] if grad.dim() == 2 and grad.shape[1] > 1 else grad.flatten()
        plotted = [
            (y, dy) for y, dy in zip(curve["y"], curve["dy"], strict=True) if y is not None
        ]  # binary_cross_entropy is cut to [0, 1]
        assert len(plotted) == len(loss.flatten()), curve["function"]
        assert_curve(
            {**curve, "y": [p[0] for p in plotted], "dy": [p[1] for p in plotted]},
            loss.flatten().tolist(),
            read.tolist(),
        )


def test_the_landing_page_leads_everywhere_with_no_network(
    visit: Callable[..., Visit], server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = visit("/")
    names = landing.page.get_by_role("navigation").get_by_role("link").all_inner_texts()
    assert names == ["API docs", "API reference", "Explorer", "Catalogue", "Metrics", "Open Inference Protocol"]
    # its one inline style is allowed by its policy (a blocked one would be a console error)
    assert landing.evaluate("getComputedStyle(document.body).maxWidth") == "736px"
    landing.screenshot("landing", capsys)
    landing.check_clean()
    landing.page.get_by_role("link", name="Explorer").click()
    landing.wait_until("document.documentElement.dataset.redraws === '1'")
    assert landing.page.url == f"{server.url}/explore#activations=sigmoid,gelu,leaky_relu"
    landing.check_clean()


def point_by_point(
    module: ModuleType, name: str, x: list[float], target: float, **params: Any
) -> tuple[list[float], list[float]]:
    """The plugin's loss and its gradient at each x alone (a batch of one), computed here."""
    loss_fn = getattr(module, name)(**params)
    values, grads = [], []
    for point in x:
        given = torch.tensor([[point]], dtype=torch.float32, requires_grad=True)
        loss = loss_fn(given, torch.tensor([[target]], dtype=torch.float32))
        (grad,) = torch.autograd.grad(loss, given)
        values.append(loss.item())
        grads.append(grad.item())
    return values, grads


def test_explorer_plots_a_plugin_loss_without_reduction_point_by_point(
    visit: Callable[..., Visit], plugin_server: PluginServer, capsys: pytest.CaptureFixture[str]
) -> None:
    explorer = visit("/explore#losses=huberish_loss,HuberLoss", at=plugin_server.running)
    explorer.wait_until("document.documentElement.dataset.redraws === '1'")
    data = explorer.evaluate("window.explorer.lastData")
    assert [c["function"] for c in data["curves"]] == ["huberish_loss", "huber_loss"]
    assert data["notices"] == []
    huberish = curve_of(data, "huberish_loss")
    assert huberish["requests"] == len(data["x"]) == 401
    assert huberish["request"] == {
        "function": "huberish_loss", "input": [[-3]], "target": [[1]], "params": {"delta": 1.0}, "grad": True
    }  # fmt: skip
    assert curve_of(data, "huber_loss")["requests"] == 1
    assert_curve(huberish, *point_by_point(plugin_server.module, "HuberishLoss", data["x"], 1.0))
    # the tutorial's loss is Huber's: the same curve as torch's, asked in one request
    assert_curve(huberish, curve_of(data, "huber_loss")["y"], curve_of(data, "huber_loss")["dy"])
    posted = sum(url.endswith("/loss") for url in explorer.requests)
    assert posted == 401 + 1
    with capsys.disabled():
        print(
            f"\nhuberish_loss point by point and huber_loss at once: {posted} requests, {data['milliseconds']:.0f} ms"
        )

    delta = explorer.page.locator("fieldset[data-function=huberish_loss] input[name=delta]")
    delta.fill("0.5")
    delta.press("Tab")
    explorer.wait_until("document.documentElement.dataset.redraws === '2'")
    data = explorer.evaluate("window.explorer.lastData")
    huberish = curve_of(data, "huberish_loss")
    assert huberish["request"]["params"] == {"delta": 0.5}
    assert_curve(huberish, *point_by_point(plugin_server.module, "HuberishLoss", data["x"], 1.0, delta=0.5))
    note = explorer.page.locator("fieldset[data-function=huberish_loss] .sweep-note").inner_text()
    assert "each point is its own request" in note
    explorer.screenshot("explore-plugin-loss", capsys, full_page=True)
    explorer.check_clean()


def test_explorer_names_what_it_cannot_plot_and_why(visit: Callable[..., Visit], plugin_server: PluginServer) -> None:
    explorer = visit("/explore#activations=scaled_swish,nosuchfn,mse_loss,GELU", at=plugin_server.running)
    explorer.wait_until("document.documentElement.dataset.redraws === '1'")
    data = explorer.evaluate("window.explorer.lastData")
    assert [c["function"] for c in data["curves"]] == ["scaled_swish", "gelu"]
    x = torch.tensor(data["x"], dtype=torch.float32).requires_grad_(True)
    swish = plugin_server.module.ScaledSwish()(x)
    (grad,) = torch.autograd.grad(swish, x, torch.ones_like(swish))
    assert_curve(curve_of(data, "scaled_swish"), swish.tolist(), grad.tolist())
    shown = [line for line in explorer.page.locator("#errors").inner_text().splitlines() if line]
    expected = [
        "nosuchfn: not plotted: no activation of that name in this service's catalogue (GET /functions lists them).",
        "mse_loss: not plotted: mse_loss is a loss: open #losses=mse_loss.",
    ]
    assert data["notices"] == expected
    assert shown == expected

    explorer = visit("/explore#losses=ctc_loss,picky_loss,mse_loss", at=plugin_server.running)
    explorer.wait_until("document.documentElement.dataset.redraws === '1'")
    data = explorer.evaluate("window.explorer.lastData")
    assert [c["function"] for c in data["curves"]] == ["picky_loss", "mse_loss"]
    picky = curve_of(data, "picky_loss")
    assert picky["error"].startswith("422: ")
    assert "prediction out of range [-1, 1]" in picky["error"]
    assert picky["error"].endswith("asked point by point)")
    # the first refusal stops the sweep: the six first points were in flight, no more are sent
    assert sum(url.endswith("/loss") for url in explorer.requests) <= 6 + 1
    lines = [line for line in explorer.page.locator("#errors").inner_text().splitlines() if line]
    assert lines[0] == "ctc_loss: not plotted: its tensors are vectors or sequences, not one prediction."
    assert lines[1] == f"picky_loss: not plotted: {picky['error']}"
    unplottable = explorer.page.locator("#unplottable").inner_text()
    assert unplottable.startswith("Not plotted here: ctc_loss, cosine_embedding_loss, triplet_margin_loss")
    assert explorer.off_origin() == []
    # Chromium logs each refused request; nothing else went wrong
    assert {error.split(":")[0] for error in explorer.errors} == {"Failed to load resource"}
    assert all("status of 422" in error for error in explorer.errors)
