"""File formats vlx reads and writes, one reader/writer pair per format; the siblings call them."""
