"""Group-wise RL for the SCORE compression policy: mask sampling, rewards, advantages, losses."""
