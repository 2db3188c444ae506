"""The machinery behind benchmarks/bench.py (not part of the lstmcore package).

    machine   facts about the CPU (model, ISA flags, caches), the FMA peak, versions, git commit
    cases     the shapes: compass configs, the grid, variable lengths, case dictionaries
    engines   one class per engine (lstmcore, torch, ONNX Runtime and their variants) on seeded data
    timing    warm-up, calibrated samples, medians
    child     what runs inside one engine's process
    outputs   the engines' outputs on disk and their agreement (relative norms, tolerances)
    runner    the parent: one process per (engine, batch of cases), outputs compared across engines
    report    Markdown tables, summaries, heat maps and bar charts
"""
