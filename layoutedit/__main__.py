from layoutedit.cli.entry import main

main()
