from toydomain import main

main()
