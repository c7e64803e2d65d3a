"""Visual-token compression: surprise state, SCORE policy network and static top-k selection."""
