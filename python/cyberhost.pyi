"""Type stubs for the `cyberhost` extension module (the Rust engine's Python binding)."""

from os import PathLike
from typing import Any, Callable, Dict, Optional, Tuple, Union

__version__: str

_Path = Union[str, "PathLike[str]"]

class Pipeline:
    """A loaded CyberHost model.

    `weights` is "tiny" or "paper" (synthetic weights of a preset) or a checkpoint directory;
    `backend` is "cpu" (f32 reference) or "cuda" (`device` picks the GPU). Loading releases the
    GIL. Raises ValueError for a bad checkpoint or backend name (the CLI's messages) and
    RuntimeError for other failures.
    """

    def __init__(self, weights: str = "tiny", backend: str = "cpu", device: int = 0) -> None: ...
    def generate(
        self,
        image: Optional[_Path] = None,
        audio: Optional[_Path] = None,
        out: _Path = "out.mp4",
        *,
        seed: int = 0,
        steps: Optional[int] = None,
        guidance: Optional[float] = None,
        size: Union[str, Tuple[int, int], None] = None,
        hand_clarity: Optional[float] = None,
        pose: Optional[_Path] = None,
        on_progress: Optional[Callable[[Dict[str, Any]], Any]] = None,
    ) -> Dict[str, Any]:
        """Make an MP4 at `out` from a photo (PNG/JPEG) and speech (WAV); both default to the
        bundled ones. Releases the GIL while it runs. `on_progress` receives each event of
        `cyberhost generate --json` as a dict ("stage", "note", "clip", "step"); an exception
        it raises (or Ctrl-C) stops the run at the next sampler step and is re-raised here.
        Returns the "done" event: out, frames, fps, audio_seconds, reference_hand_clarity, t.
        """
        ...
