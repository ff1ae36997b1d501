#!/bin/sh
# make demo: index a sample collection, run English, Russian and refused example queries,
# print the rankings and write a contact sheet; then start the bot against the local Bot API
# stand-in and serve the web chat on http://127.0.0.1:8080 (Ctrl-C stops both).
# Offline, no token. PHOTOS=/path for any folder; PLAYGROUND=0 to stop after the queries.
set -eu
PY=${PY:-.venv/bin/python}
DATA_DIR=${DATA_DIR:-data}
PORT=${PORT:-8080}
SAMPLES=0
if [ -z "${PHOTOS:-}" ]; then
    PHOTOS=$("$PY" -c 'import skimage.data; print(skimage.data.data_dir)')
    SAMPLES=1
    echo "Sample photos: the images that ship inside scikit-image ($PHOTOS)"
fi
INDEX="$DATA_DIR/demo-index"
SHEET="$DATA_DIR/demo-contact-sheet.html"
mkdir -p "$DATA_DIR"
"$PY" -m engine index "$PHOTOS" --index "$INDEX"
# What an admin looks at first: the photos the child detector hides, least certain first.
"$PY" -m engine moderate --index "$INDEX" --review "$DATA_DIR/demo-review.html"
if [ "$SAMPLES" = 1 ]; then
    # A person reviewed these photos (no children); record it as an admin would.
    # shellcheck disable=SC2046
    "$PY" -m engine moderate --index "$INDEX" --note "sample photo reviewed: no child" \
        --allow $(grep -v '^#' scripts/demo_reviewed_photos.txt)
fi
"$PY" -m engine search --index "$INDEX" --queries scripts/demo_queries.txt -k 3 --html "$SHEET"
echo
echo "Contact sheet of these results: $SHEET"
[ "${PLAYGROUND:-1}" = 1 ] || exit 0

# The playground: one loopback server is both Telegram (for the bot) and the web chat (for you).
TOKEN=123456789:playground-local-token
PORT_FILE="$DATA_DIR/playground.port"
rm -f "$PORT_FILE"
"$PY" -m bot.playground --port "$PORT" --token "$TOKEN" --port-file "$PORT_FILE" &
STANDIN=$!
BOT=
stop() {
    [ -n "$BOT" ] && kill "$BOT" 2>/dev/null && wait "$BOT" 2>/dev/null
    kill "$STANDIN" 2>/dev/null && wait "$STANDIN" 2>/dev/null
    exit 0
}
trap stop INT TERM
tries=0
until [ -s "$PORT_FILE" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ] || ! kill -0 "$STANDIN" 2>/dev/null; then
        echo "the playground server did not start (is port $PORT taken? try PORT=8081)" >&2
        kill "$STANDIN" 2>/dev/null
        exit 1
    fi
    sleep 0.1
done
BOUND=$(cat "$PORT_FILE")
TELEGRAM_BOT_TOKEN=$TOKEN \
TELEGRAM_API_BASE_URL="http://127.0.0.1:$BOUND/bot" \
TELEGRAM_API_FILE_URL="http://127.0.0.1:$BOUND/file/bot" \
PHOTOS_DIR="$PHOTOS" INDEX_DIR="$INDEX" DATA_DIR="$DATA_DIR/playground" ADMIN_IDS=100001 \
    "$PY" -m bot &
BOT=$!
echo
echo "Playground: open http://127.0.0.1:$BOUND/ and type a query (you are admin: try /stats)."
echo "Votes and queries go to $DATA_DIR/playground/bot.sqlite3. Ctrl-C stops the demo."
wait "$BOT"
stop
