"""Class sets of the static FER datasets and how each official label code maps onto them.

Why a module of its own: the same emotion has a different code in every release (RAF-DB counts from
1 with Surprise first, AffectNet from 0 with Neutral first, FER+ orders vote columns its own way), and
a wrong map silently swaps classes. Labels are stored as lower-case English names everywhere after
loading; each protocol fixes its class list (the metric's label set, in Exp-CLIP's order).
"""

from __future__ import annotations

# Exp-CLIP's class order (models/Text.py): its 7-class sets are the first 7, the 8-class sets add contempt.
CLASSES_7 = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
CLASSES_8 = (*CLASSES_7, "contempt")
CLASSES_11 = (*CLASSES_8, "anxiety", "helplessness", "disappointment")  # MAFW

# RAF-DB basic, EmoLabel/list_patition_label.txt: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness,
# 6 Anger, 7 Neutral.
RAFDB_CODES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}

# AffectNet `expression`: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt,
# 8 None, 9 Uncertain, 10 No-Face (8-10 are never evaluated).
AFFECTNET_CODES = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust",
                   6: "anger", 7: "contempt"}

# FER+ fer2013new.csv vote columns, in file order (the last two are not emotions).
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF")
FERPLUS_EMOTIONS = FERPLUS_COLUMNS[:8]

# Original FER2013 `emotion` codes (fer2013.csv), kept for reference; FER+ replaces these labels.
FER2013_CODES = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}

PROTOCOL_CLASSES = {
    "rafdb": CLASSES_7,
    "affectnet7": CLASSES_7,
    "affectnet8": CLASSES_8,
    "ferplus": CLASSES_8,
    "dfew": CLASSES_7,
    "ferv39k": CLASSES_7,
    "mafw": CLASSES_11,
    "afew": CLASSES_7,
}
