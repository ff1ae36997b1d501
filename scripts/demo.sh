#!/bin/sh
# make demo: index a sample collection, run English, Russian and refused example queries,
# print the rankings and write a contact sheet. Offline, no token. PHOTOS=/path for any folder.
set -eu
PY=${PY:-.venv/bin/python}
DATA_DIR=${DATA_DIR:-data}
if [ -z "${PHOTOS:-}" ]; then
    PHOTOS=$("$PY" -c 'import skimage.data; print(skimage.data.data_dir)')
    echo "Sample photos: the images that ship inside scikit-image ($PHOTOS)"
fi
INDEX="$DATA_DIR/demo-index"
SHEET="$DATA_DIR/demo-contact-sheet.html"
mkdir -p "$DATA_DIR"
"$PY" -m engine index "$PHOTOS" --index "$INDEX"
"$PY" -m engine search --index "$INDEX" --queries scripts/demo_queries.txt -k 3 --html "$SHEET"
echo
echo "Contact sheet of these results: $SHEET"
