// The firmware without a model: see CMakeLists.txt.
int main(void) { return 0; }
