// lstmcore — umbrella header: include this to get every public declaration.
//
//   T steps, B batch, I input features, H hidden units, G gates per cell
//   (LSTM 4, GRU 3, RNN 1); row-major, the rightmost dimension changes fastest.
//
//   lstmcore/types.h      Cell, CellSpec, Dims, SequenceOptions, errors, threads
//   lstmcore/recurrent.h  forward / backward / cache_size for any cell
//   lstmcore/lstm.h       the LSTM cell
//   lstmcore/gru.h        the GRU cell (both reset placements)
//   lstmcore/rnn.h        the plain RNN cell (tanh, relu)
//   lstmcore/stack.h      stacked and bidirectional layers with dropout
//   lstmcore/variants.h   cell options: peepholes, clip, activations, projection, layer norm, zoneout
//   lstmcore/cuda.h       the same layers on a GPU (a CUDA build; no CUDA types in the header)
//   lstmcore/stepper.h    streaming inference: one layer, one step per call, weights packed once
#pragma once

#include "lstmcore/version.h"
#include "lstmcore/types.h"
#include "lstmcore/recurrent.h"
#include "lstmcore/lstm.h"
#include "lstmcore/gru.h"
#include "lstmcore/rnn.h"
#include "lstmcore/stack.h"
#include "lstmcore/variants.h"
#include "lstmcore/cuda.h"
#include "lstmcore/stepper.h"
