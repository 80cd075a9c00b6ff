"""Models for test_executor.py, at module level so that executor workers can import them."""

from __future__ import annotations

import os
import signal
import time

import torch
from torch import nn

from ..helpers import Linear

#: An input whose first feature is exactly this makes ExitingLinear's worker die.
POISON = 42.0


def linear(seed: int = 0, n_in: int = 6, n_out: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n_out, n_in, generator=gen), torch.randn(n_out, generator=gen)


class CountingLinear(Linear):
    """A Linear model that appends its process id to ``log`` each time it is unpickled."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, log: str) -> None:
        super().__init__(weight, bias)
        self.log = log

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


class DropoutLinear(Linear):
    """Linear with dropout on its input: scored in train mode, results would be random."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__(weight, bias)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x))


class ExitingLinear(Linear):
    """Kills its worker process (os._exit, or SIGKILL with ``kill``) on the input whose first feature is POISON.

    With ``once`` set to a path, it dies only the first time (the path records it).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, once: str | None = None, kill: bool = False) -> None:
        super().__init__(weight, bias)
        self.once = once
        self.kill = kill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.reshape(x.shape[0], -1)[:, 0] == POISON).any()):
            if self.once is None or not os.path.exists(self.once):
                if self.once is not None:
                    open(self.once, "w").close()
                if getattr(self, "kill", False):
                    os.kill(os.getpid(), signal.SIGKILL)
                os._exit(3)
        return self.fc(x)


class FailingLinear(Linear):
    """Raises a plain RuntimeError (not a CleverError) on the POISON input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.reshape(x.shape[0], -1)[:, 0] == POISON).any()):
            raise RuntimeError("boom in forward")
        return self.fc(x)


class UnloadableLinear(Linear):
    """Cannot be unpickled: stands for a model whose code is missing on the workers."""

    def __setstate__(self, state: dict) -> None:
        raise RuntimeError("not loadable here")


def call_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A module-level function to wrap a model in ``functools.partial`` (picklable, unlike a lambda)."""
    return model(x)


class SleepyLinear(Linear):
    """Sleeps ``seconds`` in every forward on the POISON input (or on every input with ``always``).

    Each process that scores with it appends its pid to ``log`` (when given) on its first forward.
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor, seconds: float, always: bool = False, log: str | None = None
    ) -> None:
        super().__init__(weight, bias)
        self.seconds, self.always, self.log = seconds, always, log
        self._logged: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log is not None and self._logged != os.getpid():
            self._logged = os.getpid()
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")
        if self.always or bool((x.reshape(x.shape[0], -1)[:, 0] == POISON).any()):
            time.sleep(self.seconds)
        return self.fc(x)


class ProbabilityLinear(Linear):
    """Returns softmax probabilities: scoring it warns (CleverWarning) that the outputs are not logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).softmax(-1)
