from trident_audio.cli import main

main()
