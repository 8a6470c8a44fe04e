// The translation unit that builds the tests' precompiled header (cmake/Testing.cmake).
