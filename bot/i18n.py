"""Everything the bot says, in English and Russian, and how a user's language is chosen.

Kept apart from the handlers so that the wording can be reviewed (and tested: every key exists
in both languages, with the same placeholders) without reading any I/O code. The legal
disclaimer is not here: its wording belongs to the engine's legal filter, which owns it.
"""

from __future__ import annotations

import string
from typing import Final, Literal

Language = Literal["en", "ru"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "ru")
DEFAULT_LANGUAGE: Final[Language] = "en"
LANGUAGE_NAMES: Final[dict[Language, str]] = {"en": "English", "ru": "Русский"}


def normalize_language(code: str | None) -> Language:
    """Map a Telegram `language_code` ("ru", "ru-RU", "en-GB", None) to a language we speak.

    Russian for any Russian variant, English for everything else: English is the lingua
    franca of the hosting's photographers who do not speak Russian.
    """
    if code and code.strip().lower().replace("_", "-").split("-")[0] == "ru":
        return "ru"
    return DEFAULT_LANGUAGE


def parse_language(text: str) -> Language | None:
    """The language a user typed after /language ("ru", "русский", "English"), or None."""
    word = text.strip().lower()
    if word in ("en", "eng", "english", "английский", "англ"):
        return "en"
    if word in ("ru", "rus", "russian", "русский", "рус"):
        return "ru"
    return None


_EN: Final[dict[str, str]] = {
    "start": (
        "Hi {name}! I find reference photos in our collection.\n\n"
        "Describe the picture you need, e.g. “two dogs running on a beach at sunset”, "
        "or send me a photo to find similar ones. Rate the results with 👍/👎: it teaches "
        "the search.\n\n/help — how it works · /language — English/Русский"
    ),
    "help": (
        "How to search:\n"
        "• Describe the photo in a sentence, in English or Russian: subject, action, place, "
        "light (“a red car on a wet street at night”).\n"
        "• Or send a photo: I will find photos that look like it.\n"
        "• Under each album, press 👍 or 👎 for a photo by its number; press it again to take "
        "the vote back. “More ▶” shows the next results.\n"
        "• If a photo shows a child, press 🚫 with its number: it is hidden from every "
        "search at once and the admins review it.\n"
        "• Queries about children are refused for legal reasons.\n\n"
        "/language — switch between English and Russian"
    ),
    "help_admin": (
        "Admin commands:\n"
        "/stats [days] — queries, refusals, 👍/👎, latency, top queries\n"
        "/export [days] [queries|feedback|labels|reports] — the log as CSV (default: queries and "
        "feedback of the last {days} days)\n"
        "/reindex — update the index from the photo folder"
    ),
    "language_prompt": "Choose the language I talk to you in:",
    "language_set": "OK, I will talk to you in English.",
    "language_unknown": "I speak English (/language en) and Russian (/language ru).",
    "empty_query": "Your message is empty: describe the photo you are looking for.",
    "query_too_long": (
        "Your query is {length} characters long; please keep it under {limit} — "
        "one or two sentences describing the photo work best."
    ),
    "nothing_found": (
        "Nothing found for this query. Tips: describe what is in the picture (subject, "
        "action, place, light) in simpler words, or send a similar photo instead."
    ),
    "photo_nothing_found": "I found no similar photos in the collection.",
    "results_header": "Photos {first}–{last} for “{query}”.",
    "results_header_one": "Photo {first} for “{query}”.",
    "photo_query_label": "your photo",
    "rate_prompt": (
        "Rate by number: 👍 good match, 👎 poor match (press again to undo); "
        "🚫 if the photo shows a child."
    ),
    "more_button": "More ▶",
    "no_more_results": "That was everything I found for this query.",
    "withheld_one": "{count} photo withheld.",
    "withheld_few": "{count} photos withheld.",
    "withheld_many": "{count} photos withheld.",
    "slow_down": "You are sending queries quickly; I answer one a second, yours are queued.",
    "too_many_queued": (
        "Too many queries at once: I skipped this one. Wait a few seconds and send it again."
    ),
    "searching_busy": "Please wait a moment: I am still answering your previous query.",
    "vote_up": "👍 saved for photo {rank}",
    "vote_down": "👎 saved for photo {rank}",
    "vote_cleared": "Vote for photo {rank} withdrawn",
    "report_done": (
        "Thank you. Photo {rank} is now hidden from every search; the admins will review it."
    ),
    "report_already": "Photo {rank} is already hidden from every search. Thank you.",
    "report_admin": (
        "🚫 A user reported a photo as showing a child: {photo} (query {query_id}, photo "
        "{rank}). It is blocked for every search. Keep the block, or lift it on the server: "
        "python -m engine moderate --index INDEX_DIR --clear PHOTO"
    ),
    "button_expired": "This button has expired: send the query again.",
    "button_not_yours": (
        "This button does not work for you: it belongs to another user's results or has "
        "expired. Send the query again."
    ),
    "sticker": "Nice sticker! I search with words or photos: describe the picture you need.",
    "voice": (
        "I cannot listen to voice or audio messages yet: please type what you are looking for."
    ),
    "document": (
        "Please send pictures as a photo (not as a file) to find similar ones, "
        "or type a description."
    ),
    "video": "I search still photos only: send a photo or describe the picture.",
    "other": "I understand text descriptions and photos: describe the picture you need.",
    "edited": "I answer new messages only: send the corrected query as a new message.",
    "unknown_command": "I do not know that command. /help lists what I can do.",
    "photo_unreadable": "I could not read this picture: please send another photo (JPEG or PNG).",
    "photo_too_big": "This picture is too large for me to download; please send a smaller one.",
    "not_allowed": "Sorry, this command is for the hosting's admins only.",
    "bad_days": "Give the number of days as a whole number from 1 to {max}, e.g. /{command} 7.",
    "bad_table": "Unknown table {table!r}: use queries, feedback or labels.",
    "export_caption": "{table}: {rows} rows, last {days} days (user ids pseudonymised).",
    "export_empty": "No {table} in the last {days} days.",
    "export_too_big": (
        "The {table} export is {size} MB, over Telegram's limit for bots: use "
        "`python -m bot export` on the server."
    ),
    "stats": (
        "Last {days} days:\n"
        "Queries: {queries} from {users} users ({photo_queries} by photo)\n"
        "Refused: {refused} ({refused_pct})\n"
        "Photos shown: {shown}\n"
        "Votes: 👍 {up} / 👎 {down} ({up_pct} 👍)\n"
        "Reported as showing a child 🚫: {reports}\n"
        "Latency: p50 {p50}, p95 {p95}\n"
        "Top queries:\n{top}"
    ),
    "stats_no_top": "  (none yet)",
    "reindex_unavailable": "Reindexing needs PHOTOS_DIR and INDEX_DIR to be set for the bot.",
    "reindex_running": "A reindex is already running.",
    "reindex_start": "Reindexing {folder}: scanning…",
    "reindex_progress": "Reindexing: {done} of {total} new or changed photos embedded…",
    "reindex_done": (
        "Index updated: {total} photos ({added} added, {updated} updated, {removed} removed, "
        "{unchanged} unchanged, {skipped} unreadable skipped)."
    ),
    "reindex_failed": "Reindexing failed: {error}",
    "error": (
        "Something went wrong on my side (incident {incident}). Please try again; "
        "if it keeps happening, tell the admins this code."
    ),
}

_RU: Final[dict[str, str]] = {
    "start": (
        "Здравствуйте, {name}! Я подбираю референсные фотографии из нашей коллекции.\n\n"
        "Опишите нужный кадр, например «две собаки бегут по пляжу на закате», "
        "или пришлите фотографию — найду похожие. Оценивайте результаты 👍/👎: "
        "так поиск учится.\n\n/help — как это работает · /language — English/Русский"
    ),
    "help": (
        "Как искать:\n"
        "• Опишите кадр одной фразой, по-русски или по-английски: кто или что, действие, "
        "место, свет («красная машина на мокрой улице ночью»).\n"
        "• Или пришлите фотографию — я найду похожие.\n"
        "• Под каждым альбомом нажмите 👍 или 👎 у номера фотографии; повторное нажатие "
        "отменяет оценку. «Ещё ▶» показывает следующие результаты.\n"
        "• Если на фотографии ребёнок, нажмите 🚫 у её номера: она сразу скрывается из "
        "всех поисков, администраторы её проверят.\n"
        "• Запросы о детях отклоняются по требованиям закона.\n\n"
        "/language — переключить язык (English/Русский)"
    ),
    "help_admin": (
        "Команды администратора:\n"
        "/stats [дни] — запросы, отказы, 👍/👎, задержка, частые запросы\n"
        "/export [дни] [queries|feedback|labels|reports] — журнал в CSV (по умолчанию queries и "
        "feedback за {days} дней)\n"
        "/reindex — обновить индекс по папке с фотографиями"
    ),
    "language_prompt": "Выберите язык общения:",
    "language_set": "Хорошо, буду отвечать по-русски.",
    "language_unknown": "Я говорю по-английски (/language en) и по-русски (/language ru).",
    "empty_query": "Сообщение пустое: опишите фотографию, которую ищете.",
    "query_too_long": (
        "В запросе {length} символов, а можно не больше {limit}. Лучше всего работают "
        "одно-два предложения с описанием кадра."
    ),
    "nothing_found": (
        "По этому запросу ничего не нашлось. Советы: опишите, что на снимке (кто или что, "
        "действие, место, свет), проще, или пришлите похожую фотографию."
    ),
    "photo_nothing_found": "Похожих фотографий в коллекции не нашлось.",
    "results_header": "Фотографии {first}–{last} по запросу «{query}».",
    "results_header_one": "Фотография {first} по запросу «{query}».",
    "photo_query_label": "ваша фотография",
    "rate_prompt": (
        "Оцените по номеру: 👍 подходит, 👎 не подходит (повторное нажатие отменяет); "
        "🚫 — если на фотографии ребёнок."
    ),
    "more_button": "Ещё ▶",
    "no_more_results": "Это всё, что нашлось по этому запросу.",
    "withheld_one": "{count} фотография скрыта.",
    "withheld_few": "{count} фотографии скрыты.",
    "withheld_many": "{count} фотографий скрыто.",
    "slow_down": (
        "Вы отправляете запросы очень часто: отвечаю на один в секунду, остальные в очереди."
    ),
    "too_many_queued": (
        "Слишком много запросов сразу: этот я пропустил. Подождите несколько секунд "
        "и отправьте его снова."
    ),
    "searching_busy": "Подождите немного: я ещё отвечаю на предыдущий запрос.",
    "vote_up": "👍 для фотографии {rank} сохранён",
    "vote_down": "👎 для фотографии {rank} сохранён",
    "vote_cleared": "Оценка фотографии {rank} отменена",
    "report_done": (
        "Спасибо. Фотография {rank} скрыта из всех поисков; администраторы её проверят."
    ),
    "report_already": "Фотография {rank} уже скрыта из всех поисков. Спасибо.",
    "report_admin": (
        "🚫 Пользователь сообщил, что на фотографии ребёнок: {photo} (запрос {query_id}, "
        "фотография {rank}). Она заблокирована для всех поисков. Оставьте блокировку или "
        "снимите её на сервере: python -m engine moderate --index INDEX_DIR --clear PHOTO"
    ),
    "button_expired": "Эта кнопка устарела: отправьте запрос ещё раз.",
    "button_not_yours": (
        "Эта кнопка вам недоступна: она относится к чужим результатам или устарела. "
        "Отправьте запрос ещё раз."
    ),
    "sticker": "Отличный стикер! Но я ищу по словам и фотографиям: опишите нужный кадр.",
    "voice": "Голосовые и аудиосообщения я пока не понимаю: напишите, что вы ищете.",
    "document": (
        "Чтобы найти похожие, пришлите картинку как фотографию (не файлом) "
        "или опишите её словами."
    ),
    "video": "Я ищу только фотографии: пришлите снимок или опишите кадр.",
    "other": "Я понимаю текстовые описания и фотографии: опишите нужный кадр.",
    "edited": "Я отвечаю только на новые сообщения: отправьте исправленный запрос заново.",
    "unknown_command": "Такой команды я не знаю. /help — что я умею.",
    "photo_unreadable": (
        "Не удалось прочитать изображение: пришлите другую фотографию (JPEG или PNG)."
    ),
    "photo_too_big": "Это изображение слишком большое для загрузки; пришлите поменьше.",
    "not_allowed": "Извините, эта команда доступна только администраторам.",
    "bad_days": "Укажите число дней целым числом от 1 до {max}, например /{command} 7.",
    "bad_table": "Неизвестная таблица {table!r}: укажите queries, feedback или labels.",
    "export_caption": "{table}: {rows} строк за {days} дней (id пользователей скрыты).",
    "export_empty": "За последние {days} дней в {table} ничего нет.",
    "export_too_big": (
        "Выгрузка {table} занимает {size} МБ — больше лимита Telegram для ботов: "
        "используйте `python -m bot export` на сервере."
    ),
    "stats": (
        "За {days} дней:\n"
        "Запросы: {queries} от {users} пользователей ({photo_queries} по фото)\n"
        "Отказы: {refused} ({refused_pct})\n"
        "Показано фотографий: {shown}\n"
        "Оценки: 👍 {up} / 👎 {down} ({up_pct} 👍)\n"
        "Жалобы «на фото ребёнок» 🚫: {reports}\n"
        "Задержка: p50 {p50}, p95 {p95}\n"
        "Частые запросы:\n{top}"
    ),
    "stats_no_top": "  (пока нет)",
    "reindex_unavailable": "Для переиндексации у бота должны быть заданы PHOTOS_DIR и INDEX_DIR.",
    "reindex_running": "Переиндексация уже идёт.",
    "reindex_start": "Переиндексация {folder}: просматриваю файлы…",
    "reindex_progress": "Переиндексация: обработано {done} из {total} новых или изменённых фото…",
    "reindex_done": (
        "Индекс обновлён: {total} фото (добавлено {added}, обновлено {updated}, удалено "
        "{removed}, без изменений {unchanged}, пропущено нечитаемых {skipped})."
    ),
    "reindex_failed": "Переиндексация не удалась: {error}",
    "error": (
        "Что-то пошло не так на моей стороне (инцидент {incident}). Попробуйте ещё раз; "
        "если ошибка повторяется, сообщите администраторам этот код."
    ),
}

MESSAGES: Final[dict[Language, dict[str, str]]] = {"en": _EN, "ru": _RU}


def text(language: Language, key: str, **values: object) -> str:
    """The message `key` in `language`, with `values` filled in.

    A missing key or placeholder is a programmer error and raises (KeyError), which the unit
    tests catch for every message in both languages.
    """
    return MESSAGES[language][key].format(**values)


def plural_key(stem: str, count: int) -> str:
    """`stem_one`, `stem_few` or `stem_many` by the Russian rule (1, 21 / 2-4, 22 / 5-20, 0);
    English messages use the same three keys with "few" and "many" worded alike."""
    if count % 10 == 1 and count % 100 != 11:
        return f"{stem}_one"
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return f"{stem}_few"
    return f"{stem}_many"


def placeholders(template: str) -> frozenset[str]:
    """The `{names}` a template expects (for the tests that keep both languages in step)."""
    return frozenset(
        name.split("!")[0].split(".")[0]
        for _, name, _, _ in string.Formatter().parse(template)
        if name
    )
