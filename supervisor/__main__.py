from supervisor.startup import main

main()
