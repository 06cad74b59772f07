"""A tiny SQuAD dataset in the official JSON layout, shared by the task and end-to-end fine-tuning tests."""

import json

CONTEXT = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region "
           "in France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway.")


def squad_json(path, v2=False):
    """Writes two answerable questions (and, for v2, one impossible one) about CONTEXT to `path`."""
    qas = [{"id": "q1", "question": "Where is Normandy?",
            "answers": [{"text": "France", "answer_start": CONTEXT.index("France")}]},
           {"id": "q2", "question": "From which countries did the raiders come?",
            "answers": [{"text": "Denmark, Iceland and Norway", "answer_start": CONTEXT.index("Denmark")}]}]
    if v2:
        qas.append({"id": "q3", "question": "Who built the pyramids?", "answers": [], "is_impossible": True})
    path.write_text(json.dumps({"version": "v2.0" if v2 else "1.1",
                                "data": [{"title": "Normans", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}))
    return path
