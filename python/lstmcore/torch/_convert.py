"""convert(model): every torch.nn recurrent module inside a model replaced, in place, by its twin."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from . import _modules

_TWINS = {nn.LSTM: _modules.LSTM, nn.GRU: _modules.GRU, nn.RNN: _modules.RNN,
          nn.LSTMCell: _modules.LSTMCell, nn.GRUCell: _modules.GRUCell, nn.RNNCell: _modules.RNNCell}
_RECURRENT = (nn.RNNBase, nn.RNNCellBase)
_HOOKS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
          "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
          "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def _why_not(m):
    """Why m cannot be converted (None when it can)."""
    cls = type(m)
    if cls not in _TWINS:
        if isinstance(m, (_modules.RNNBase, _modules.RNNCellBase)):
            return None  # already lstmcore's
        return (f"{cls.__qualname__} is a subclass of torch.nn.{cls.__mro__[1].__name__}, not the class itself "
                f"(its own code would be lost)")
    names = list(m._flat_weights_names) if isinstance(m, nn.RNNBase) else [
        n for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if getattr(m, n, None) is not None]
    for n in names:
        if not isinstance(m._parameters.get(n), nn.Parameter):
            return f"its {n} is not a plain Parameter (weight_norm or another reparametrisation?)"
    dtypes = {m._parameters[n].dtype for n in names}
    if not dtypes <= {torch.float32, torch.float64} or len(dtypes) != 1:
        return f"its parameters are {', '.join(sorted(map(str, dtypes)))}; lstmcore computes in float32 or float64"
    extra = set(m._parameters) - set(names)
    if extra or m._buffers:
        return f"it has parameters or buffers of its own ({', '.join(sorted(extra | set(m._buffers)))})"
    return None


def twin_of(m):
    """lstmcore.torch's twin of the torch.nn module m, holding m's own Parameter objects."""
    cls = _TWINS[type(m)]
    if isinstance(m, nn.RNNBase):
        kw = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first, dropout=m.dropout,
                  bidirectional=m.bidirectional)
        if isinstance(m, nn.LSTM):
            kw["proj_size"] = m.proj_size
        if isinstance(m, nn.RNN):
            kw["nonlinearity"] = m.nonlinearity
        with warnings.catch_warnings():  # torch warned about dropout with one layer already
            warnings.simplefilter("ignore")
            twin = cls(m.input_size, m.hidden_size, device="meta", **kw)
        names = m._flat_weights_names
    else:
        kw = {"nonlinearity": m.nonlinearity} if isinstance(m, nn.RNNCell) else {}
        twin = cls(m.input_size, m.hidden_size, bias=m.bias, device="meta", **kw)
        names = [n for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if m._parameters.get(n) is not None]
    for n in names:
        setattr(twin, n, m._parameters[n])
    twin.train(m.training)
    for attr in _HOOKS:
        if attr in m.__dict__:
            object.__setattr__(twin, attr, m.__dict__[attr])
    return twin


def convert(model, strict=True):
    """Replaces every torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell and RNNCell inside ``model``, in
    place, by its lstmcore.torch twin, which holds the very same Parameter objects (an optimizer
    built before keeps working, the state_dict keeps its keys) and the module's hooks and
    train/eval mode. Returns ``model`` (or the twin, when ``model`` itself is such a module).

    What cannot be converted (a subclass of those classes, parameters of another dtype than
    float32 / float64, a reparametrised weight such as weight_norm) is a TypeError naming each such
    module, and nothing is changed; with ``strict=False`` those stay as they are (a warning names
    them) and the rest is converted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    found, refused = {}, []
    for name, m in model.named_modules(remove_duplicate=False):
        if not isinstance(m, _RECURRENT) or id(m) in found:
            continue
        why = _why_not(m)
        if why is not None:
            refused.append(f"{name or '(the model itself)'} ({type(m).__name__}): {why}")
        elif type(m) in _TWINS:
            found[id(m)] = m
    if refused:
        msg = "lstmcore.torch.convert cannot convert " + "; ".join(refused)
        if strict:
            raise TypeError(msg)
        warnings.warn(msg + " (left as they are)", stacklevel=2)
    twins = {key: twin_of(m) for key, m in found.items()}
    if id(model) in twins:
        return twins[id(model)]
    for parent in list(model.modules()):
        for child_name, child in list(parent._modules.items()):
            if child is not None and id(child) in twins:
                parent._modules[child_name] = twins[id(child)]
    return model
