"""Document adapters outside the pure core: the WeasyPrint PDF/A-3 renderer (:mod:`.pdf`) and its
style cache (:mod:`.pdf_styles`). They import ``billing`` and WeasyPrint, nothing of the workflows."""
