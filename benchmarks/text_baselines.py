"""Baselines for the text recipes, on exactly the recipes' splits.

- Language modelling: bits per byte of ``lzma`` (preset 9) on the validation text alone, and given the
  training text as context (``len(compress(train + val)) - len(compress(train))``).
- Classification: majority class, and bag-of-words (unigram + bigram counts) logistic regression.

    python benchmarks/text_baselines.py
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from modal_tf.data import pydoc_corpus

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "text_baselines.json"


def lzma_bits_per_byte() -> dict[str, float]:
    train = pydoc_corpus.corpus_text("train").encode("utf-8")
    val = pydoc_corpus.corpus_text("val").encode("utf-8")
    alone = len(lzma.compress(val, preset=9)) * 8 / len(val)
    context = (len(lzma.compress(train + val, preset=9)) - len(lzma.compress(train, preset=9))) * 8 / len(val)
    return {
        "lzma_val_alone_bpb": round(alone, 3),
        "lzma_with_train_context_bpb": round(context, 3),
        "val_bytes": len(val),
    }


def classification() -> dict[str, float]:
    samples = pydoc_corpus.paragraph_samples(400)
    train_text, train_labels = zip(*samples["train"], strict=True)
    test_text, test_labels = zip(*samples["test"], strict=True)
    majority = max(set(train_labels), key=train_labels.count)
    vectorizer = CountVectorizer(ngram_range=(1, 2), min_df=1)
    features = vectorizer.fit_transform(train_text)
    model = LogisticRegression(max_iter=2000, C=1.0).fit(features, train_labels)
    accuracy = (model.predict(vectorizer.transform(test_text)) == list(test_labels)).mean()
    return {
        "majority_test_acc": round(sum(label == majority for label in test_labels) / len(test_labels), 4),
        "bow_logreg_test_acc": round(float(accuracy), 4),
        "test_paragraphs": len(test_labels),
    }


def main() -> None:
    results = {"language_modelling": lzma_bits_per_byte(), "classification": classification()}
    RESULTS.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
