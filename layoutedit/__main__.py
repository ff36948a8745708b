from layoutedit.cli.app import main

main()
