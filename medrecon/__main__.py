from medrecon.cli import main

main()
