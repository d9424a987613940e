"""The error every pretrained-weights module raises (a ``ValueError``: bad input, named in the message)."""


class PretrainedError(ValueError):
    """A checkpoint or pretrained source cannot be used; the message names the file or key."""


__all__ = ["PretrainedError"]
