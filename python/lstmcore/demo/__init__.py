"""``python -m lstmcore.demo``: real sequence models trained on real data, each twice from the
same initial weights — on lstmcore (``lstmcore.torch``) and on ``torch.nn`` — with the same
optimizer, data order and seed, side by side: loss curves, results, time per epoch.

Tasks (one module each): ``adding`` (Hochreiter & Schmidhuber's adding problem, LSTM against a
tanh RNN, and the vanishing gradient through ``lstmcore.backward``), ``digits`` (scikit-learn's
digits read row by row and pixel by pixel), ``sunspots`` (statsmodels' yearly sunspot numbers,
one-step-ahead GRU forecasts), ``chars`` (a character-level LSTM language model on the Python
standard library's source). Shared: ``_train`` (the engines and the side-by-side training
loop), ``_plot`` (figures), ``_report`` (the summary table and its files).

Needs the ``demo`` extra: ``pip install "lstmcore[demo]"`` (torch, tqdm, matplotlib,
scikit-learn, statsmodels). Importing this package imports none of them.
"""

TASKS = ("adding", "digits", "sunspots", "chars")
