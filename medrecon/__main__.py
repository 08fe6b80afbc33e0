from medrecon.apps.cli import main

main()
