from keyhook.cli import main

main()
