"""Words the synthetic set speaks besides the keywords, all of them `_unknown_` in training.

Plain data (kws_jax.data.synth reads it); its own module so the generator stays short.
"""

# Speech Commands' other words, spoken to train `_unknown_`.
UNKNOWN_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
                 "backward", "forward", "follow", "learn", "visual")
# Phonetic neighbours of the keywords spoken as `_unknown_` (hard negatives, as wake-word
# trainers use adversarial phrases). Disjoint from the confusables of the negative audio that
# false accepts are measured on (streameval.speech_parts.CONFUSABLES; a test checks), so the
# false-accept figures stay a test on unseen words. No word holds a keyword or its homophone.
HARD_NEGATIVES = (
    "yeast", "yelled", "chest", "vest", "desk", "guest", "yearn", "press",             # yes
    "nope", "knob", "road", "nosy", "notice", "mow", "flow", "boat",                   # no
    "cut", "hut", "pump", "puppy", "tub", "abrupt", "setup", "pickup",                 # up
    "crown", "drown", "mound", "pound", "county", "renown", "dowel", "doubt",          # down
    "lifted", "lofty", "laughter", "lapse", "lens", "list", "weft", "bereft",          # left
    "fright", "kite", "might", "ripe", "tight", "bride", "height", "rhyme",            # right
    "john", "lawn", "bond", "honest", "option", "pond", "fond", "bomb",                # on
    "coffee", "office", "soft", "tough", "boss", "moth", "cuff", "buff",               # off
    "store", "stuck", "staff", "storm", "chop", "mop", "stall", "stocking",            # stop
    "coat", "goad", "load", "bow", "crow", "toad", "gopher", "code",                   # go
)
