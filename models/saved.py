"""One way to save and load a fitted model directory: learner files plus a JSON spec.

The stack (:mod:`popbatch.models.stack`) and the two heads
(:mod:`popbatch.models.popularity`, :mod:`popbatch.models.genre`) each keep their
fitted learners in native files beside one JSON spec of everything else. A file's
suffix says its format: ``.keras`` (a Keras network), ``.joblib`` (a scikit-learn
forest) or ``.json`` (an XGBoost model). A class says which files it has, which of
its learners are present, and how to read and write its spec; :class:`SavedModel`
does the rest. The training libraries are imported only inside save and load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

from popbatch.core import files


class SavedModel:
    """Mixin for a model saved as learner files plus a JSON spec."""

    SPEC_FILE: ClassVar[str]
    #: learner attribute -> its file in the directory
    LEARNER_FILES: ClassVar[dict[str, str]]
    #: the xgboost class a ``.json`` learner is loaded into
    XGBOOST_CLASS: ClassVar[str] = "XGBClassifier"

    def saved_learners(self) -> list[str]:
        """Returns the learners this model has (the files :meth:`save` writes)."""
        return list(self.LEARNER_FILES)

    def spec(self) -> dict[str, Any]:
        """Returns everything but the learners, as the JSON spec holds it."""
        raise NotImplementedError

    @classmethod
    def spec_learners(cls, spec: dict[str, Any]) -> list[str]:
        """Returns the learners a saved directory has, as its spec says."""
        return list(cls.LEARNER_FILES)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], learners: dict[str, Any]) -> Self:
        """Returns the model from its spec and its loaded learners (absent ones None)."""
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        """Write the learner files and the spec into ``directory`` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in self.saved_learners():
            _write_learner(getattr(self, name), directory / self.LEARNER_FILES[name])
        files.write_atomically(directory / self.SPEC_FILE, json.dumps(self.spec(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Load a directory written by :meth:`save` (needs the training extras)."""
        directory = Path(directory)
        spec = json.loads((directory / cls.SPEC_FILE).read_text(encoding="utf-8"))
        present = cls.spec_learners(spec)
        learners = {
            name: _read_learner(directory / file, cls.XGBOOST_CLASS) if name in present else None
            for name, file in cls.LEARNER_FILES.items()
        }
        return cls.from_spec(spec, learners)


def _write_learner(model: Any, path: Path) -> None:
    if path.suffix == ".keras":
        model.save(path)
    elif path.suffix == ".joblib":
        import joblib

        joblib.dump(model, path)
    else:
        model.save_model(path)


def _read_learner(path: Path, xgboost_class: str) -> Any:
    if path.suffix == ".keras":
        import keras

        return keras.saving.load_model(path)
    if path.suffix == ".joblib":
        import joblib

        return joblib.load(path)
    import xgboost

    model = getattr(xgboost, xgboost_class)()
    model.load_model(path)
    return model
