"""The title-word logistic-regression baseline on a recipe with an optional image (recipes/fashion_all.yaml), scored
on its test rows with a photo, without one, and all: the comparison for the network's per-presence-pattern metrics.

Fitted as bench/baseline_logreg.py fits its title column (word counts, LogisticRegression C=1, max_iter 2000) on the
recipe's train + val rows (all of them, with or without a photo), on the recipe's own split.

    python bench/baseline_title_by_photo.py [--recipe recipes/fashion_all.yaml] [--out bench/results/...json]
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from edgemtl.data.dataset import load_table
from edgemtl.data.manifest import is_missing, split_rows
from edgemtl.recipe import load_recipe
from edgemtl.rundir import environment_info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/fashion_all.yaml")
    ap.add_argument("--out", default="bench/results/fashion_all_title_baseline.json")
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    table = load_table(recipe)
    split = split_rows(table, dataclasses.replace(recipe.data.split, train_on_val=True), recipe.seed)
    train, test = split["train"], split["test"]
    photo = np.array([not is_missing(v) for v in table.columns["image"]])
    groups = {"image+title": test[photo[test]], "title": test[~photo[test]], "all": test}
    titles = table.columns["title"]
    vec = CountVectorizer()
    words_tr = vec.fit_transform([titles[i] for i in train])
    tasks = [t.name for t in recipe.tasks if t.type == "multiclass" and not t.auxiliary]
    results, start = {}, time.time()
    for task in tasks:
        col = table.columns[task]
        keep = np.array([not is_missing(col[i]) for i in train])
        clf = LogisticRegression(max_iter=2000, C=1.0)  # as bench/baseline_logreg.py
        clf.fit(words_tr[keep], np.asarray([col[i] for i in train])[keep])
        results[task] = {}
        for name, rows in groups.items():
            rows = np.array([i for i in rows if not is_missing(col[i])])
            guess = clf.predict(vec.transform([titles[i] for i in rows]))
            results[task][name] = float(np.mean(guess == np.asarray([col[i] for i in rows])))
        print(task, {k: round(v, 4) for k, v in results[task].items()}, flush=True)
    out = {"split": {"train_rows": len(train), "test_rows": {k: len(v) for k, v in groups.items()},
                     "recipe": args.recipe},
           "machine": environment_info(recipe.seed), "seconds": round(time.time() - start, 1),
           "features": "title word counts", "accuracy": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
