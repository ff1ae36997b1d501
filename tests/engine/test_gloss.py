"""Russian → English gloss: word forms, hyphenated compounds, unknown words, admin lexicons."""

from __future__ import annotations

from pathlib import Path

from engine.encoders.gloss import RussianGlosser, load_lexicon


def test_inflected_words_are_glossed_by_lemma() -> None:
    glosser = RussianGlosser()
    assert glosser.gloss("Две собаки бегут по пляжу").split()[:2] == ["two", "dogs"]
    assert "beach" in glosser.gloss("на пляже") and "beach" in glosser.gloss("пляжами")
    assert glosser.gloss("Чёрная собака") == glosser.gloss("черную собаку")


def test_number_survives_the_gloss() -> None:
    """Plural forms and counted nouns gloss in the English plural, as captions write them."""
    glosser = RussianGlosser()
    assert glosser.gloss("собака") == "dog"
    assert glosser.gloss("собаки играют") == "dogs playing"
    assert glosser.gloss("три собаки") == "three dogs"  # Russian: genitive singular
    assert glosser.gloss("5 собак") == "5 dogs"
    assert glosser.gloss("люди и дети") == "people and children"
    assert glosser.gloss("мужчины и женщины") == "men and women"
    assert glosser.gloss("мальчик в шортах") == "boy in shorts"


def test_two_word_prepositions_gloss_once() -> None:
    glosser = RussianGlosser()
    assert glosser.gloss("рядом с собакой") == "next to dog"
    assert glosser.gloss("мужчина с собакой") == "man with dog"


def test_english_plural_rules() -> None:
    from engine.encoders.gloss import english_plural

    cases = {"dog": "dogs", "bus": "bus", "box": "boxes", "beach": "beaches", "puppy": "puppies",
             "toy": "toys", "policeman": "policemen", "tennis ball": "tennis balls",
             "child": "children", "clothing": "clothing"}
    assert {word: english_plural(word) for word in cases} == cases


def test_hyphenated_compound_and_unknown_and_latin_words() -> None:
    glosser = RussianGlosser()
    gloss = glosser.gloss("коричнево-белая собака")
    assert "brown" in gloss and "white" in gloss and gloss.endswith("dog")
    assert glosser.gloss("щщщщщ") == ""  # unknown words are dropped
    assert glosser.gloss("велосипед BMX 2") == f"{glosser.gloss('велосипед')} bmx 2"


def test_admin_lexicon_extends_and_overrides(tmp_path: Path) -> None:
    extra = tmp_path / "extra.tsv"
    extra.write_text("# studio words\nru\ten\nциклорама\tcyclorama\nсобака\thound\n",
                     encoding="utf-8")
    glosser = RussianGlosser((Path(__file__).parents[2] / "engine/encoders/lexicon/ru_en.tsv",
                              extra))
    assert glosser.gloss("циклорама") == "cyclorama"
    assert glosser.gloss("собака") == "hound"


def test_packaged_lexicon_is_large_and_folded() -> None:
    from engine.encoders.gloss import DEFAULT_LEXICON

    lexicon = load_lexicon([DEFAULT_LEXICON])
    assert len(lexicon) > 3000
    assert all("ё" not in word for word in lexicon)
    assert lexicon["собака"] == "dog" and lexicon["закат"] == "sunset"


def test_phrases_gloss_as_one_meaning(tmp_path: Path) -> None:
    """Several-word lexicon rows match the lemmas of consecutive words, longest first, and a
    noun phrase keeps its number; a phrase led by a verb or a preposition does not."""
    glosser = RussianGlosser()
    assert glosser.gloss("Два воздушных змея в небе") == "two kites in sky"
    assert glosser.gloss("воздушный змей") == "kite"
    assert glosser.gloss("Белые медведи") == "polar bears"
    assert glosser.gloss("мальчик на заднем плане") == "boy in the background"
    assert glosser.gloss("позируют для фотографии") == "posing for a picture"
    extra = tmp_path / "phrases.tsv"
    extra.write_text("ru\ten\nшвейный машинка\tsewing machine\nмашинка\ttoy car\n"
                     "старый швейный машинка\tantique sewing machine\n", encoding="utf-8")
    admin = RussianGlosser((Path(__file__).parents[2] / "engine/encoders/lexicon/ru_en.tsv",
                            extra))
    assert admin.gloss("швейная машинка") == "sewing machine"
    assert admin.gloss("старой швейной машинкой") == "antique sewing machine"
    assert admin.gloss("швейными машинками") == "sewing machines"
    assert admin.gloss("машинка") == "toy car"


def test_word_readings_that_depend_on_form() -> None:
    """Ties between parses go to the non-noun ("синей" is blue, not the noun "синь"); "с"
    before a genitive is "from"; a present-tense verb reads as the -ing form captions use."""
    from engine.encoders.gloss import english_ing

    glosser = RussianGlosser()
    assert glosser.gloss("в синей футболке") == glosser.gloss("в синюю футболку")
    assert "blues" not in glosser.gloss("в синей футболке")
    assert glosser.gloss("прыгает со скамейки") == "jumping from bench"
    assert glosser.gloss("с собакой") == "with dog"
    assert glosser.gloss("Собака ловит мяч") == "dog catching ball"
    cases = {"catch": "catching", "hit": "hitting", "make": "making", "see": "seeing",
             "tie": "tying", "open": "opening", "turn": "turning"}
    assert {verb: english_ing(verb) for verb in cases} == cases
