"""Schema snapshot 2 for the schema tests: snapshot 1 with one of each kind of change.

- Course.credits: a new field with a default
- Teacher.department: dropped
- Course.course_name: max_length 100 -> 200
- Student.birth_date: now nullable
- Classroom: a new table
- Course.course_code: a new index
- Student.name -> Student.full_name: a column rename, declared with renamed_from
"""

from fluxon.database import models as Models


class User(Models.AuthorizedUser):
    username = Models.CharField(max_length=100, unique=True)
    password = Models.CharField(max_length=200)
    email = Models.CharField(max_length=130)
    user_creation_date = Models.DateTimeField(auto_now_add=True)


class Teacher(Models.Model):
    user = Models.OneToOneField(to_table=User, primary_key=True)
    name = Models.CharField(max_length=100)


class Course(Models.Model):
    course_name = Models.CharField(max_length=200)
    course_code = Models.CharField(max_length=10, index=True)
    teacher = Models.ForeignKey(to_table=Teacher, on_delete=Models.CASCADE)
    credits = Models.IntegerField(default=3)


class Student(Models.Model):
    user = Models.OneToOneField(to_table=User, primary_key=True)
    full_name = Models.CharField(max_length=100, renamed_from="name")
    birth_date = Models.DateField(null=True)
    courses = Models.ManyToManyField(to_table=Course, through="Enrollment")


class Enrollment(Models.Model):
    student = Models.ForeignKey(to_table=Student, on_delete=Models.CASCADE)
    course = Models.ForeignKey(to_table=Course, on_delete=Models.CASCADE)
    date_enrolled = Models.DateField(auto_now_add=True)


class Classroom(Models.Model):
    name = Models.CharField(max_length=50, unique=True)
    capacity = Models.IntegerField(default=30)
