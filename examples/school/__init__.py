"""The seed README's school application: users, teachers, courses, students and enrollments.

Run the whole thing (broker, two workers, a scripted client) with
``python3 -m examples.school.demo``; docs/tutorial.md builds it step by step.
"""
