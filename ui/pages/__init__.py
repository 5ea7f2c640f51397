"""One module a page; each declares its routes with @ui.page and is imported by ui.main."""
