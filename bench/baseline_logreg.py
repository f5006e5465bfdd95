"""Logistic-regression baselines for fashion on edgemtl's own split (title word counts, 16x16 pixels, both).

The shared data README lists these baselines on its own 80/20 split; a fair comparison re-runs them on the split
the recipe uses. Train rows = the recipe's train + val rows (the baseline needs no validation; the fashion recipe
trains the network on the same rows, `data.split.train_on_val: true`), test = its test.

    python bench/baseline_logreg.py [--recipe recipes/fashion.yaml] [--out bench/results/fashion_baseline.json]
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from edgemtl.data.dataset import load_table
from edgemtl.data.manifest import is_missing, split_rows
from edgemtl.recipe import load_recipe
from edgemtl.rundir import environment_info


def pixels16(table, rows) -> np.ndarray:
    paths = table.columns["image"]
    return np.stack([np.asarray(Image.open(table.base / paths[i]).convert("RGB").resize((16, 16)), np.float32)
                     .reshape(-1) / 255.0 for i in rows])


def fit_score(x_train, y_train, x_test, y_test) -> float:
    keep_tr = np.array([not is_missing(v) for v in y_train])
    keep_te = np.array([not is_missing(v) for v in y_test])
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(x_train[keep_tr], np.asarray(y_train)[keep_tr])
    return float(np.mean(clf.predict(x_test[keep_te]) == np.asarray(y_test)[keep_te]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/fashion.yaml")
    ap.add_argument("--out", default="bench/results/fashion_baseline.json")
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    table = load_table(recipe)
    split = split_rows(table, dataclasses.replace(recipe.data.split, train_on_val=True), recipe.seed)
    train, test = split["train"], split["test"]
    titles = table.columns["title"]
    vec = CountVectorizer()
    words_tr = vec.fit_transform([titles[i] for i in train])
    words_te = vec.transform([titles[i] for i in test])
    pix_tr, pix_te = pixels16(table, train), pixels16(table, test)
    both = (hstack([words_tr, csr_matrix(pix_tr)]).tocsr(), hstack([words_te, csr_matrix(pix_te)]).tocsr())
    features = {"title word counts": (words_tr, words_te), "16x16 pixels": (pix_tr, pix_te), "both": both}
    tasks = [t.name for t in recipe.tasks if t.type == "multiclass" and not t.auxiliary]
    results = {}
    start = time.time()
    for task in tasks:
        col = table.columns[task]
        y_tr, y_te = [col[i] for i in train], [col[i] for i in test]
        results[task] = {name: fit_score(a, y_tr, b, y_te) for name, (a, b) in features.items()}
        results[task]["best"] = max(results[task].values())
        print(task, {k: round(v, 4) for k, v in results[task].items()}, flush=True)
    out = {"split": {"train_rows": len(train), "test_rows": len(test), "recipe": args.recipe},
           "machine": environment_info(recipe.seed),
           "seconds": round(time.time() - start, 1), "accuracy": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
