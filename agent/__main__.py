"""``python -m schoolmon.agent`` runs the agent's command line."""

from schoolmon.agent.cli import main

if __name__ == "__main__":
    main(prog_name="schoolmon-agent")
