# keyhook device start-up: the code is kh/app/main.py (compiled, or frozen into the image).
from kh.app.main import main

main()
