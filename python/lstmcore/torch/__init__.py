"""lstmcore as a PyTorch backend: drop-in twins of torch.nn's recurrent modules.

    import lstmcore.torch
    rnn = lstmcore.torch.LSTM(input_size, hidden_size, num_layers=2, batch_first=True)
    model = lstmcore.torch.convert(model)     # every nn.LSTM / GRU / RNN and cell inside, in place

``LSTM``, ``GRU``, ``RNN``, ``LSTMCell``, ``GRUCell``, ``RNNCell`` take torch.nn's arguments, hold
torch.nn's parameters (same names and shapes, so state_dicts load both ways) and return what
torch.nn returns (batched and unbatched input, optional hx, PackedSequence in and out); keyword-only
arguments add lstmcore's cell variants (peepholes, layer norm, activations, clip, coupled or no
forget gate, zoneout, GRU ``reset_after=False``, ``merge="sum"``). Every layer and direction is one
lstmcore call; autograd goes into lstmcore's backward (its training cache, nothing recomputed).

The calls are also the torch custom operators ``torch.ops.lstmcore.layer_forward`` /
``layer_backward``, which torch.compile (fullgraph, forward and backward) and torch.export use.
Threads: ``torch.get_num_threads()``, unless ``lstmcore.set_num_threads`` chose a count.

Importing this module imports torch; ``import lstmcore`` alone never does.
"""
from ._convert import convert
from ._modules import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "RNNBase", "RNNCellBase", "convert"]
