# Shadows the stdlib's encodings package when this directory is first on
# sys.path: the interpreter cannot start, and every call must answer FAULT.
raise ImportError('encodings shadowed by a test')
