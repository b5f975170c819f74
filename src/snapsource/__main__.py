from snapsource.cli.main import main

main()
