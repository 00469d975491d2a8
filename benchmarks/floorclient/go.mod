module floorclient

go 1.19
